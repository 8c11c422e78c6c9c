// The GPT-2 ops and the optimizer (ops.h) on a backend against their CPU specification.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "harness.h"
#include "llama_ops.h"
#include "method_ops.h"
#include "ops.h"

namespace gradmm {
namespace check {
static void check_embedding(const Backend* be, Rng& r, int B, int T, int C, int V, int pos0) {
  const std::string s = "(" + std::to_string(B) + "," + std::to_string(T) + "," + std::to_string(C) + ")";
  auto tokens = randint(r, (size_t)B * T, V);
  auto wte = randn(r, (size_t)V * C), wpe = randn(r, (size_t)(pos0 + T) * C), inp = randn(r, (size_t)B * T * C);
  std::vector<float> out((size_t)B * T * C);
  embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, pos0);
  auto dtok = up(be, tokens);
  auto dwte = up(be, wte), dwpe = up(be, wpe), dinp = up(be, inp);
  BackendBuffer<float> dout(be, out.size());
  be->embedding_forward(dout.data(), dtok.data(), dwte.data(), dwpe.data(), B, T, C, pos0, 1.f);
  report("embedding_forward " + s, nmse(down(be, dout), out), kTolExact);

  auto g = randn(r, out.size());
  auto gwte = randn(r, wte.size()), gwpe = randn(r, wpe.size());
  auto rwte = gwte, rwpe = gwpe;
  embedding_backward(rwte.data(), rwpe.data(), g.data(), tokens.data(), B, T, C, pos0);
  auto dg = up(be, g), dgwte = up(be, gwte), dgwpe = up(be, gwpe);
  be->embedding_backward(dgwte.data(), dgwpe.data(), dg.data(), dtok.data(), B, T, C, pos0, 1.f);
  report("embedding_backward dwte " + s, nmse(down(be, dgwte), rwte), kTolExact);
  report("embedding_backward dwpe " + s, nmse(down(be, dgwpe), rwpe), kTolExact);

  input_embedding_forward(out.data(), inp.data(), wpe.data(), B, T, C, pos0);
  be->input_embedding_forward(dout.data(), dinp.data(), dwpe.data(), B, T, C, pos0);
  report("input_embedding_forward " + s, nmse(down(be, dout), out), kTolExact);
  auto gin = randn(r, inp.size());
  auto rin = gin;
  rwpe = gwpe;
  input_embedding_backward(rin.data(), rwpe.data(), g.data(), B, T, C, pos0);
  auto dgin = up(be, gin);
  auto dgwpe2 = up(be, gwpe);
  be->input_embedding_backward(dgin.data(), dgwpe2.data(), dg.data(), B, T, C, pos0);
  report("input_embedding_backward dinp " + s, nmse(down(be, dgin), rin), kTolExact);
  report("input_embedding_backward dwpe " + s, nmse(down(be, dgwpe2), rwpe), kTolExact);
}

static void check_layernorm(const Backend* be, Rng& r, int N, int C) {
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(C) + ")";
  auto x = randn(r, (size_t)N * C, 2.f), w = randn(r, C), b = randn(r, C);
  for (auto& v : x) v += 0.5f;
  std::vector<float> out(x.size()), mean(N), rstd(N);
  layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
  auto dx = up(be, x), dw = up(be, w), db = up(be, b);
  BackendBuffer<float> dout(be, out.size()), dmean(be, N), drstd(be, N);
  be->layernorm_forward(dout.data(), dmean.data(), drstd.data(), dx.data(), dw.data(), db.data(), N, C, 1e-5f);
  report("layernorm_forward out " + s, nmse(down(be, dout), out), kTolExact);
  report("layernorm_forward mean " + s, nmse(down(be, dmean), mean), kTolExact);
  report("layernorm_forward rstd " + s, nmse(down(be, drstd), rstd), kTolExact);
  auto g = randn(r, out.size());
  auto gin = randn(r, x.size()), gw = randn(r, C), gb = randn(r, C);
  auto rin = gin, rw = gw, rb = gb;
  layernorm_backward(rin.data(), rw.data(), rb.data(), g.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  auto dg = up(be, g), dgin = up(be, gin), dgw = up(be, gw), dgb = up(be, gb);
  be->layernorm_backward(dgin.data(), dgw.data(), dgb.data(), dg.data(), dx.data(), dw.data(), dmean.data(),
                         drstd.data(), N, C);
  // With C = 1 the normalised value is exactly 0 and the true dinp is 0: what the op adds is rounding noise of
  // w·d − mean(w·d) scaled by rstd = 1/√eps ≈ 316 (the CPU's order cancels exactly, a GPU reduction need not).
  report("layernorm_backward dinp " + s, nmse(down(be, dgin), rin), C == 1 ? 1e-8 : kTolExact);
  report("layernorm_backward dweight " + s, nmse(down(be, dgw), rw), kTolExact);
  report("layernorm_backward dbias " + s, nmse(down(be, dgb), rb), kTolExact);
}

void check_gemm(const Backend* be, Rng& r, const char* mode, double tol, int M, int N, int K) {
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int acc = 0; acc < 2; ++acc) {
        const int pad = 3;  // leading dimensions larger than the rows
        const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        auto A = randn(r, (size_t)(ta ? K : M) * lda), Bm = randn(r, (size_t)(tb ? N : K) * ldb);
        auto C0 = randn(r, (size_t)M * ldc);
        auto ref = C0;
        sgemm(ta, tb, M, N, K, A.data(), lda, Bm.data(), ldb, ref.data(), ldc, acc);
        auto dA = up(be, A), dB = up(be, Bm), dC = up(be, C0);
        be->gemm(ta, tb, M, N, K, dA.data(), lda, dB.data(), ldb, dC.data(), ldc, acc);
        char name[160];
        std::snprintf(name, sizeof name, "gemm %s %c%c%s M=%d N=%d K=%d", mode, ta ? 'T' : 'N', tb ? 'T' : 'N',
                      acc ? " acc" : "", M, N, K);
        report(name, nmse(down(be, dC), ref), tol);  // includes the padding, which must stay untouched
      }
}

static void check_matmul(const Backend* be, Rng& r, int N, int C, int OC, double tol) {
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(C) + "," + std::to_string(OC) + ")";
  auto x = randn(r, (size_t)N * C), w = randn(r, (size_t)C * OC), b = randn(r, OC);
  std::vector<float> out((size_t)N * OC);
  matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC);
  auto dx = up(be, x), dw = up(be, w), db = up(be, b);
  BackendBuffer<float> dout(be, out.size());
  be->matmul_forward(dout.data(), dx.data(), dw.data(), db.data(), N, C, OC);
  report("matmul_forward " + s, nmse(down(be, dout), out), tol);
  be->matmul_forward(dout.data(), dx.data(), dw.data(), nullptr, N, C, OC);
  matmul_forward(out.data(), x.data(), w.data(), (const float*)nullptr, N, C, OC);
  report("matmul_forward no bias " + s, nmse(down(be, dout), out), tol);
  auto g = randn(r, out.size());
  auto gin = randn(r, x.size()), gw = randn(r, w.size()), gb = randn(r, OC);
  auto rin = gin, rw = gw, rb = gb;
  matmul_backward(rin.data(), rw.data(), rb.data(), g.data(), x.data(), w.data(), N, C, OC);
  auto dg = up(be, g), dgin = up(be, gin), dgw = up(be, gw), dgb = up(be, gb);
  be->matmul_backward(dgin.data(), dgw.data(), dgb.data(), dg.data(), dx.data(), dw.data(), N, C, OC);
  report("matmul_backward dinp " + s, nmse(down(be, dgin), rin), tol);
  report("matmul_backward dweight " + s, nmse(down(be, dgw), rw), tol);
  report("matmul_backward dbias " + s, nmse(down(be, dgb), rb), kTolExact);
}

static void check_elementwise(const Backend* be, Rng& r, long N) {
  const std::string s = "(" + std::to_string(N) + ")";
  auto x = randn(r, N, 2.f), y = randn(r, N), g = randn(r, N);
  std::vector<float> out(N);
  gelu_forward(out.data(), x.data(), N);
  auto dx = up(be, x), dy = up(be, y), dg = up(be, g);
  BackendBuffer<float> dout(be, N);
  be->gelu_forward(dout.data(), dx.data(), N);
  report("gelu_forward " + s, nmse(down(be, dout), out), kTolExact);
  auto gin = randn(r, N);
  auto rin = gin;
  gelu_backward(rin.data(), x.data(), g.data(), N);
  auto dgin = up(be, gin);
  be->gelu_backward(dgin.data(), dx.data(), dg.data(), N);
  report("gelu_backward " + s, nmse(down(be, dgin), rin), kTolExact);

  residual_forward(out.data(), x.data(), y.data(), N);
  be->residual_forward(dout.data(), dx.data(), dy.data(), N);
  report("residual_forward " + s, nmse(down(be, dout), out), kTolExact);
  auto ga = randn(r, N), gb = randn(r, N);
  auto ra = ga, rb = gb;
  residual_backward(ra.data(), rb.data(), g.data(), N);
  auto dga = up(be, ga), dgb = up(be, gb);
  be->residual_backward(dga.data(), dgb.data(), dg.data(), N);
  report("residual_backward da " + s, nmse(down(be, dga), ra), kTolExact);
  report("residual_backward db " + s, nmse(down(be, dgb), rb), kTolExact);
}

static void check_crossentropy(const Backend* be, Rng& r, int N, int V) {
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(V) + ")";
  auto logits = randn(r, (size_t)N * V, 3.f);
  auto targets = randint(r, N, V);
  std::vector<float> mask(N);
  for (int i = 0; i < N; ++i) mask[i] = i % 3 == 1 ? 0.f : 1.f;
  for (int with_mask = 0; with_mask < 2; ++with_mask) {
    const std::string sm = s + (with_mask ? " masked" : "");
    std::vector<float> losses(N, 0.f), probs((size_t)N * V, 0.f);
    softmax_crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(),
                                 with_mask ? mask.data() : nullptr, N, V);
    auto dl = up(be, logits);
    auto dt = up(be, targets);
    auto dm = up(be, mask);
    auto dlosses = up(be, std::vector<float>(N, 0.f)), dprobs = up(be, std::vector<float>((size_t)N * V, 0.f));
    be->softmax_crossentropy_forward(dlosses.data(), dprobs.data(), dl.data(), dt.data(), with_mask ? dm.data() : nullptr,
                                     N, V);
    report("softmax_crossentropy_forward losses " + sm, nmse(down(be, dlosses), losses), kTolExact);
    report("softmax_crossentropy_forward probs " + sm, nmse(down(be, dprobs), probs), kTolExact);
    auto dlo = randn(r, N);
    auto g0 = randn(r, (size_t)N * V);
    auto ref = g0;
    softmax_crossentropy_backward(ref.data(), dlo.data(), probs.data(), targets.data(), with_mask ? mask.data() : nullptr,
                                  N, V);
    auto ddlo = up(be, dlo), dg = up(be, g0);
    be->softmax_crossentropy_backward(dg.data(), ddlo.data(), dprobs.data(), dt.data(), with_mask ? dm.data() : nullptr,
                                      N, V);
    report("softmax_crossentropy_backward " + sm, nmse(down(be, dg), ref), kTolExact);
  }
}

static void check_adamw(const Backend* be, Rng& r, long n) {
  const std::string s = "(" + std::to_string(n) + ")";
  auto p = randn(r, n), g = randn(r, n), m = randn(r, n, 0.1f), v = randn(r, n, 0.1f);
  for (auto& x : v) x = x * x;
  for (float max_norm : {0.f, 0.5f}) {  // the second clips (the norm of n standard normals is about √n)
    const std::string sc = s + (max_norm > 0 ? " clipped" : "");
    auto rp = p, rg = g, rm = m, rv = v;
    const double nr = clip_and_adamw(rp.data(), rg.data(), rm.data(), rv.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f,
                                     max_norm, 7);
    auto dp = up(be, p), dg = up(be, g), dm = up(be, m), dv = up(be, v);
    const double nd = be->clip_adamw(dp.data(), dg.data(), dm.data(), dv.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f,
                                     max_norm, 7);
    report("clip_adamw params " + sc, nmse(down(be, dp), rp), kTolExact);
    report("clip_adamw grads " + sc, nmse(down(be, dg), rg), kTolExact);
    report("clip_adamw m " + sc, nmse(down(be, dm), rm), kTolExact);
    report("clip_adamw v " + sc, nmse(down(be, dv), rv), kTolExact);
    report("clip_adamw norm " + sc, rel2(nd, nr), 1e-20);
  }
}

void run_model_op_checks(const Backend* be, Rng& r, double gemm_tol_f32) {
  check_embedding(be, r, 2, 5, 7, 11, 0);
  check_embedding(be, r, 3, 17, 64, 50, 3);
  check_layernorm(be, r, 1, 1);
  check_layernorm(be, r, 13, 37);
  check_layernorm(be, r, 70, 768);
  check_gemm(be, r, "default", gemm_tol_f32, 1, 1, 1);
  check_gemm(be, r, "default", gemm_tol_f32, 7, 13, 5);
  check_gemm(be, r, "default", gemm_tol_f32, 65, 63, 17);
  check_gemm(be, r, "default", gemm_tol_f32, 130, 70, 33);
  check_gemm(be, r, "default", gemm_tol_f32, 5, 70, 4099);  // few tiles, long K: split-K on the device
  check_matmul(be, r, 9, 13, 39, gemm_tol_f32);
  check_matmul(be, r, 67, 64, 192, gemm_tol_f32);
  check_elementwise(be, r, 1);
  check_elementwise(be, r, 1001);
  check_elementwise(be, r, 300007);
  check_crossentropy(be, r, 1, 5);
  check_crossentropy(be, r, 7, 1001);
  check_crossentropy(be, r, 5, 50257);
  check_adamw(be, r, 1);
  check_adamw(be, r, 100003);
}

}  // namespace check
}  // namespace gradmm
