// Standalone checks of the CUDA backend (no Node): every op of the backend table on the device against the CPU op
// of binding/src/ops.h or llama_ops.h (the specification), forward and backward, on random shapes including odd
// sizes, compared by normalised MSE  Σ(got − ref)² / Σ ref²  under a per-op tolerance; then the executors (GPT-2 and
// two Llama-family shapes: forward, backward, decode) and the ADMM inner step (build_target, match_loss, x_update,
// project) end to end against gpt2.cpp / llama.cpp / gradmatch.cpp / admm.cpp. The projection's choice
// (project_choose) must give admm.cpp choose_tokens' ids exactly, ties included, on every backend.
//
// The same harness first runs with the CPU backend table in place of the device (no GPU needed): that checks the
// harness itself, the table wiring and the model/method code written against the table (model_exec.cpp), which
// must reproduce the CPU engine exactly (tolerance 0). Without a usable CUDA device the device part prints
// "SKIP: no CUDA device (...)". Last line: "N passed, M failed"; exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "admm.h"
#include "backend.h"
#include "cuda_ops.h"
#include "gemm.h"
#include "gpt2.h"
#include "gradmatch.h"
#include "llama.h"
#include "llama_ops.h"
#include "model_exec.h"
#include "ops.h"

using namespace gradmm;

static int g_passed = 0, g_failed = 0;
static std::string g_prefix;  // "cpu-table " or "cuda "

static void report(const std::string& name, double err, double tol) {
  const bool ok = std::isfinite(err) && err <= tol;
  std::printf("%s %s%-52s nmse=%.3e tol=%.1e\n", ok ? "PASS" : "FAIL", g_prefix.c_str(), name.c_str(), err, tol);
  std::fflush(stdout);
  (ok ? g_passed : g_failed)++;
}

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  float normal() { return (float)std::normal_distribution<double>(0.0, 1.0)(gen); }
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); }
};
static std::vector<float> randn(Rng& r, size_t n, float scale = 1.f) {
  std::vector<float> v(n);
  for (auto& x : v) x = r.normal() * scale;
  return v;
}
static std::vector<int> randint(Rng& r, size_t n, int below) {
  std::vector<int> v(n);
  for (auto& x : v) x = r.below(below);
  return v;
}

// Σ(a − b)² / max(Σ b², tiny); sizes must agree.
template <typename A, typename B>
static double nmse(const A& a, const B& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return num / std::max(den, 1e-30);
}

// ---- backend buffers from and to host vectors ----
template <typename T>
static BackendBuffer<T> up(const Backend* be, const std::vector<T>& v) {
  BackendBuffer<T> b(be, v.size());
  if (!v.empty()) be->to_device(b.data(), v.data(), v.size() * sizeof(T));
  return b;
}
template <typename T>
static std::vector<T> down(const Backend* be, const BackendBuffer<T>& b) {
  std::vector<T> v(b.size());
  if (!v.empty()) be->to_host(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// Tolerances (normalised MSE). f32 elementwise and reductions agree to rounding (~1e-14); the exact-f32 GEMM to
// ~1e-13; TF32 inputs (10-bit mantissa) to ~1e-7.
constexpr double kTolExact = 1e-10;
constexpr double kTolTF32 = 1e-5;

// =================================================================================================================
// op checks: `be` runs the op, the host computes the reference with ops.h directly

static void check_embedding(const Backend* be, Rng& r, int B, int T, int C, int V, int pos0) {
  const std::string s = "(" + std::to_string(B) + "," + std::to_string(T) + "," + std::to_string(C) + ")";
  auto tokens = randint(r, (size_t)B * T, V);
  auto wte = randn(r, (size_t)V * C), wpe = randn(r, (size_t)(pos0 + T) * C), inp = randn(r, (size_t)B * T * C);
  std::vector<float> out((size_t)B * T * C);
  embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, pos0);
  auto dtok = up(be, tokens);
  auto dwte = up(be, wte), dwpe = up(be, wpe), dinp = up(be, inp);
  BackendBuffer<float> dout(be, out.size());
  be->embedding_forward(dout.data(), dtok.data(), dwte.data(), dwpe.data(), B, T, C, pos0);
  report("embedding_forward " + s, nmse(down(be, dout), out), kTolExact);

  auto g = randn(r, out.size());
  auto gwte = randn(r, wte.size()), gwpe = randn(r, wpe.size());
  auto rwte = gwte, rwpe = gwpe;
  embedding_backward(rwte.data(), rwpe.data(), g.data(), tokens.data(), B, T, C, pos0);
  auto dg = up(be, g), dgwte = up(be, gwte), dgwpe = up(be, gwpe);
  be->embedding_backward(dgwte.data(), dgwpe.data(), dg.data(), dtok.data(), B, T, C, pos0);
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

static void check_gemm(const Backend* be, Rng& r, const char* mode, double tol, int M, int N, int K) {
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

static void check_attention(const Backend* be, Rng& r, int B, int T, int C, int NH, double tol) {
  const std::string s = "(B=" + std::to_string(B) + ",T=" + std::to_string(T) + ",C=" + std::to_string(C) +
                        ",NH=" + std::to_string(NH) + ")";
  auto qkv = randn(r, (size_t)B * T * 3 * C);
  std::vector<float> out((size_t)B * T * C), att((size_t)B * NH * T * T);
  attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  auto dqkv_in = up(be, qkv);
  BackendBuffer<float> dout(be, out.size()), datt(be, att.size());
  be->attention_forward(dout.data(), datt.data(), dqkv_in.data(), B, T, C, NH);
  report("attention_forward out " + s, nmse(down(be, dout), out), tol);
  report("attention_forward att " + s, nmse(down(be, datt), att), tol);
  auto g = randn(r, out.size());
  auto gq = randn(r, qkv.size());
  auto rq = gq;
  attention_backward(rq.data(), g.data(), qkv.data(), att.data(), B, T, C, NH);
  auto dg = up(be, g), dgq = up(be, gq);
  BackendBuffer<float> scratch(be, att.size());
  be->attention_backward(dgq.data(), scratch.data(), dg.data(), dqkv_in.data(), datt.data(), B, T, C, NH);
  report("attention_backward dqkv " + s, nmse(down(be, dgq), rq), tol);
}

// Decoding attention: Tn new positions appended to a cache holding `len` of `cap`, after a P-position shared prefix.
static void check_attention_decode(const Backend* be, Rng& r, int R, int Tn, int C, int NH, int P, int len, int cap,
                                   double tol) {
  const std::string s = "(R=" + std::to_string(R) + ",Tn=" + std::to_string(Tn) + ",C=" + std::to_string(C) +
                        ",NH=" + std::to_string(NH) + ",P=" + std::to_string(P) + ",len=" + std::to_string(len) + ")";
  auto qkv = randn(r, (size_t)R * Tn * 3 * C);
  auto pk = randn(r, (size_t)std::max(P, 1) * C), pv = randn(r, (size_t)std::max(P, 1) * C);
  auto kc = randn(r, (size_t)R * cap * C), vc = randn(r, (size_t)R * cap * C);
  std::vector<float> out((size_t)R * Tn * C);
  auto dkc = up(be, kc), dvc = up(be, vc), dpk = up(be, pk), dpv = up(be, pv), dq = up(be, qkv);
  attention_decode_forward(out.data(), kc.data(), vc.data(), P ? pk.data() : nullptr, P ? pv.data() : nullptr,
                           qkv.data(), R, Tn, C, NH, P, len, cap);
  BackendBuffer<float> dout(be, out.size());
  be->attention_decode_forward(dout.data(), dkc.data(), dvc.data(), P ? dpk.data() : nullptr, P ? dpv.data() : nullptr,
                               dq.data(), R, Tn, C, NH, P, len, cap);
  report("attention_decode_forward out " + s, nmse(down(be, dout), out), tol);
  report("attention_decode_forward k cache " + s, nmse(down(be, dkc), kc), kTolExact);
  report("attention_decode_forward v cache " + s, nmse(down(be, dvc), vc), kTolExact);
}

// ---- the Llama family's ops (llama_ops.h) ----

// embedding_forward without positions (wpe = nullptr) is the token lookup; embedding_backward without dwpe
static void check_embedding_lookup(const Backend* be, Rng& r, int B, int T, int C, int V) {
  const std::string s = "(" + std::to_string(B) + "," + std::to_string(T) + "," + std::to_string(C) + ")";
  auto tokens = randint(r, (size_t)B * T, V);
  auto wte = randn(r, (size_t)V * C);
  std::vector<float> out((size_t)B * T * C);
  for (size_t i = 0; i < tokens.size(); ++i) std::memcpy(&out[i * C], &wte[(size_t)tokens[i] * C], sizeof(float) * C);
  auto dtok = up(be, tokens);
  auto dwte = up(be, wte);
  BackendBuffer<float> dout(be, out.size());
  be->embedding_forward(dout.data(), dtok.data(), dwte.data(), nullptr, B, T, C, 0);
  report("embedding_forward no wpe " + s, nmse(down(be, dout), out), kTolExact);
  auto g = randn(r, out.size()), gwte = randn(r, wte.size());
  auto rwte = gwte;
  embedding_backward(rwte.data(), (float*)nullptr, g.data(), tokens.data(), B, T, C, 0);
  auto dg = up(be, g), dgwte = up(be, gwte);
  be->embedding_backward(dgwte.data(), nullptr, dg.data(), dtok.data(), B, T, C, 0);
  report("embedding_backward no dwpe " + s, nmse(down(be, dgwte), rwte), kTolExact);
}

static void check_rmsnorm(const Backend* be, Rng& r, int N, int C) {
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(C) + ")";
  auto x = randn(r, (size_t)N * C, 2.f), w = randn(r, C);
  std::vector<float> out(x.size()), rstd(N);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
  auto dx = up(be, x), dw = up(be, w);
  BackendBuffer<float> dout(be, out.size()), drstd(be, N);
  be->rmsnorm_forward(dout.data(), drstd.data(), dx.data(), dw.data(), N, C, 1e-5f);
  report("rmsnorm_forward out " + s, nmse(down(be, dout), out), kTolExact);
  report("rmsnorm_forward rstd " + s, nmse(down(be, drstd), rstd), kTolExact);
  BackendBuffer<float> dout2(be, out.size());
  be->rmsnorm_forward(dout2.data(), nullptr, dx.data(), dw.data(), N, C, 1e-5f);
  report("rmsnorm_forward no rstd " + s, nmse(down(be, dout2), out), kTolExact);
  auto g = randn(r, out.size()), gin = randn(r, x.size()), gw = randn(r, C);
  auto rin = gin, rw = gw;
  rmsnorm_backward(rin.data(), rw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
  auto dg = up(be, g), dgin = up(be, gin), dgw = up(be, gw);
  be->rmsnorm_backward(dgin.data(), dgw.data(), dg.data(), dx.data(), dw.data(), drstd.data(), N, C);
  report("rmsnorm_backward dinp " + s, nmse(down(be, dgin), rin), kTolExact);
  report("rmsnorm_backward dweight " + s, nmse(down(be, dgw), rw), kTolExact);
}

// RoPE on the q and k heads of packed qkv rows [B·T, (NH+2·NKV)·hd] (the v heads must stay untouched)
static void check_rope(const Backend* be, Rng& r, int B, int T, int NH, int NKV, int hd, int pos0, bool llama3) {
  const std::string s = "(B=" + std::to_string(B) + ",T=" + std::to_string(T) + ",NH=" + std::to_string(NH) +
                        ",NKV=" + std::to_string(NKV) + ",hd=" + std::to_string(hd) + ",pos0=" + std::to_string(pos0) +
                        (llama3 ? ",llama3)" : ")");
  const int ld = (NH + 2 * NKV) * hd, N = B * T, nh = NH + NKV, half = hd / 2, npos = pos0 + T;
  RopeScaling sc;
  sc.llama3 = llama3;
  sc.original_max_position_embeddings = 16;  // low frequencies adjusted within these few positions
  const auto inv = rope_inv_freq<float>(hd, 10000.0, sc);
  std::vector<float> cs((size_t)npos * half), sn((size_t)npos * half);
  rope_tables(cs.data(), sn.data(), inv, 0, npos);
  auto dcs = up(be, cs), dsn = up(be, sn);
  auto x = randn(r, (size_t)N * ld), base = randn(r, x.size());
  auto ref = base;
  rope_forward(ref.data(), x.data(), N, T, ld, nh, hd, cs.data(), sn.data(), pos0);
  auto dx = up(be, x), dout = up(be, base);
  be->rope_forward(dout.data(), dx.data(), N, T, ld, nh, hd, dcs.data(), dsn.data(), pos0);
  report("rope_forward " + s, nmse(down(be, dout), ref), kTolExact);
  auto ref2 = x;
  rope_forward(ref2.data(), ref2.data(), N, T, ld, nh, hd, cs.data(), sn.data(), pos0);
  be->rope_forward(dx.data(), dx.data(), N, T, ld, nh, hd, dcs.data(), dsn.data(), pos0);
  report("rope_forward in place " + s, nmse(down(be, dx), ref2), kTolExact);
  auto g = randn(r, x.size()), acc = randn(r, x.size());
  auto racc = acc;
  rope_backward(racc.data(), g.data(), N, T, ld, nh, hd, cs.data(), sn.data(), pos0);
  auto dg = up(be, g), dacc = up(be, acc);
  be->rope_backward(dacc.data(), dg.data(), N, T, ld, nh, hd, dcs.data(), dsn.data(), pos0, true);
  report("rope_backward accumulate " + s, nmse(down(be, dacc), racc), kTolExact);
  auto rg = g;
  rope_apply(rg.data(), rg.data(), N, T, ld, nh, hd, cs.data(), sn.data(), pos0, true, false);
  be->rope_backward(dg.data(), dg.data(), N, T, ld, nh, hd, dcs.data(), dsn.data(), pos0, false);
  report("rope_backward in place " + s, nmse(down(be, dg), rg), kTolExact);
}

static void check_swiglu(const Backend* be, Rng& r, long N) {
  const std::string s = "(" + std::to_string(N) + ")";
  auto gate = randn(r, N, 3.f), upv = randn(r, N), g = randn(r, N);
  std::vector<float> out(N);
  swiglu_forward(out.data(), gate.data(), upv.data(), N);
  auto dgate_in = up(be, gate), dup_in = up(be, upv), dg = up(be, g);
  BackendBuffer<float> dout(be, N);
  be->swiglu_forward(dout.data(), dgate_in.data(), dup_in.data(), N);
  report("swiglu_forward " + s, nmse(down(be, dout), out), kTolExact);
  auto ga = randn(r, N), gu = randn(r, N);
  auto ra = ga, ru = gu;
  swiglu_backward(ra.data(), ru.data(), g.data(), gate.data(), upv.data(), N);
  auto dga = up(be, ga), dgu = up(be, gu);
  be->swiglu_backward(dga.data(), dgu.data(), dg.data(), dgate_in.data(), dup_in.data(), N);
  report("swiglu_backward dgate " + s, nmse(down(be, dga), ra), kTolExact);
  report("swiglu_backward dup " + s, nmse(down(be, dgu), ru), kTolExact);
  auto ra2 = ga;
  swiglu_backward(ra2.data(), (float*)nullptr, g.data(), gate.data(), upv.data(), N);
  auto dga2 = up(be, ga);
  be->swiglu_backward(dga2.data(), nullptr, dg.data(), dgate_in.data(), dup_in.data(), N);
  report("swiglu_backward dgate only " + s, nmse(down(be, dga2), ra2), kTolExact);
}

// nn.Linear with strided rows (pad > 0: the rows are wider than the matrix; the padding must stay untouched)
static void check_linear(const Backend* be, Rng& r, int N, int C, int OC, int pad, bool bias, double tol) {
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(C) + "," + std::to_string(OC) +
                        ",pad=" + std::to_string(pad) + (bias ? ",bias)" : ")");
  const int ldi = C + pad, ldo = OC + pad;
  auto x = randn(r, (size_t)N * ldi), w = randn(r, (size_t)OC * C), b = randn(r, OC), out0 = randn(r, (size_t)N * ldo);
  auto ref = out0;
  linear_forward(ref.data(), ldo, x.data(), ldi, w.data(), bias ? b.data() : nullptr, N, C, OC);
  auto dx = up(be, x), dw = up(be, w), db = up(be, b), dout = up(be, out0);
  be->linear_forward(dout.data(), ldo, dx.data(), ldi, dw.data(), bias ? db.data() : nullptr, N, C, OC);
  report("linear_forward " + s, nmse(down(be, dout), ref), tol);
  auto g = randn(r, (size_t)N * ldo), gin = randn(r, x.size()), gw = randn(r, w.size()), gb = randn(r, OC);
  auto rin = gin, rw = gw, rb = gb;
  linear_backward(rin.data(), ldi, rw.data(), bias ? rb.data() : nullptr, g.data(), ldo, x.data(), ldi, w.data(), N, C,
                  OC);
  auto dg = up(be, g), dgin = up(be, gin), dgw = up(be, gw), dgb = up(be, gb);
  be->linear_backward(dgin.data(), ldi, dgw.data(), bias ? dgb.data() : nullptr, dg.data(), ldo, dx.data(), ldi,
                      dw.data(), N, C, OC);
  report("linear_backward dinp " + s, nmse(down(be, dgin), rin), tol);
  report("linear_backward dweight " + s, nmse(down(be, dgw), rw), tol);
  report("linear_backward dbias " + s, nmse(down(be, dgb), rb), kTolExact);
}

static void check_gqa_attention(const Backend* be, Rng& r, int B, int T, int NH, int NKV, int hd, double tol) {
  const std::string s = "(B=" + std::to_string(B) + ",T=" + std::to_string(T) + ",NH=" + std::to_string(NH) +
                        ",NKV=" + std::to_string(NKV) + ",hd=" + std::to_string(hd) + ")";
  const int ld = (NH + 2 * NKV) * hd;
  auto qkv = randn(r, (size_t)B * T * ld);
  std::vector<float> out((size_t)B * T * NH * hd), att((size_t)B * NH * T * T);
  gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, hd);
  auto dqkv_in = up(be, qkv);
  BackendBuffer<float> dout(be, out.size()), datt(be, att.size());
  be->gqa_attention_forward(dout.data(), datt.data(), dqkv_in.data(), B, T, NH, NKV, hd);
  report("gqa_attention_forward out " + s, nmse(down(be, dout), out), tol);
  report("gqa_attention_forward att " + s, nmse(down(be, datt), att), tol);
  auto g = randn(r, out.size()), gq = randn(r, qkv.size());
  auto rq = gq;
  gqa_attention_backward(rq.data(), g.data(), qkv.data(), att.data(), B, T, NH, NKV, hd);
  auto dg = up(be, g), dgq = up(be, gq);
  BackendBuffer<float> scratch(be, att.size());
  be->gqa_attention_backward(dgq.data(), scratch.data(), dg.data(), dqkv_in.data(), datt.data(), B, T, NH, NKV, hd);
  report("gqa_attention_backward dqkv " + s, nmse(down(be, dgq), rq), tol);
}

static void check_gqa_decode(const Backend* be, Rng& r, int R, int Tn, int NH, int NKV, int hd, int P, int len, int cap,
                             double tol) {
  const std::string s = "(R=" + std::to_string(R) + ",Tn=" + std::to_string(Tn) + ",NH=" + std::to_string(NH) +
                        ",NKV=" + std::to_string(NKV) + ",hd=" + std::to_string(hd) + ",P=" + std::to_string(P) +
                        ",len=" + std::to_string(len) + ")";
  const int KV = NKV * hd;
  auto qkv = randn(r, (size_t)R * Tn * (NH + 2 * NKV) * hd);
  auto pk = randn(r, (size_t)std::max(P, 1) * KV), pv = randn(r, (size_t)std::max(P, 1) * KV);
  auto kc = randn(r, (size_t)R * cap * KV), vc = randn(r, (size_t)R * cap * KV);
  std::vector<float> out((size_t)R * Tn * NH * hd);
  auto dkc = up(be, kc), dvc = up(be, vc), dpk = up(be, pk), dpv = up(be, pv), dq = up(be, qkv);
  gqa_attention_decode_forward(out.data(), kc.data(), vc.data(), P ? pk.data() : nullptr, P ? pv.data() : nullptr,
                               qkv.data(), R, Tn, NH, NKV, hd, P, len, cap);
  BackendBuffer<float> dout(be, out.size());
  be->gqa_attention_decode_forward(dout.data(), dkc.data(), dvc.data(), P ? dpk.data() : nullptr,
                                   P ? dpv.data() : nullptr, dq.data(), R, Tn, NH, NKV, hd, P, len, cap);
  report("gqa_attention_decode_forward out " + s, nmse(down(be, dout), out), tol);
  report("gqa_attention_decode_forward k cache " + s, nmse(down(be, dkc), kc), kTolExact);
  report("gqa_attention_decode_forward v cache " + s, nmse(down(be, dvc), vc), kTolExact);
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
  auto rp = p, rm = m, rv = v;
  adamw_update(rp.data(), g.data(), rm.data(), rv.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 7);
  auto dp = up(be, p), dg = up(be, g), dm = up(be, m), dv = up(be, v);
  be->adamw_update(dp.data(), dg.data(), dm.data(), dv.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 7);
  report("adamw params " + s, nmse(down(be, dp), rp), kTolExact);
  report("adamw m " + s, nmse(down(be, dm), rm), kTolExact);
  report("adamw v " + s, nmse(down(be, dv), rv), kTolExact);
  const double nr = grad_norm(g.data(), n), nd = be->grad_norm(dg.data(), n);
  report("grad_norm " + s, (nd - nr) * (nd - nr) / std::max(nr * nr, 1e-30), 1e-20);
  auto rs = g;
  scale_inplace(rs.data(), n, 0.37f);
  be->scale(dg.data(), n, 0.37f);
  report("scale " + s, nmse(down(be, dg), rs), kTolExact);
}

// gradient-matching pieces: the CPU table is the reference (the host model checks tie it to gradmatch.cpp/admm.cpp)
static void check_gradmatch_ops(const Backend* be, Rng& r, int n, int B, int V, int C, int L, int free_len) {
  const Backend* cpu = cpu_backend();
  const std::string s = "(n=" + std::to_string(n) + ",B=" + std::to_string(B) + ",V=" + std::to_string(V) + ")";
  auto run2 = [&](auto&& fn) {  // returns {device result, cpu result}
    return std::make_pair(fn(be), fn(cpu));
  };
  {  // gather / scatter
    auto src = randn(r, (size_t)B * L * C), rows = randn(r, (size_t)B * C), base = randn(r, (size_t)B * L * C);
    auto res = run2([&](const Backend* k) {
      auto dsrc = up(k, src);
      BackendBuffer<float> dst(k, (size_t)B * C);
      k->gather_rows(dst.data(), dsrc.data(), B, C, L, L - 1);
      return down(k, dst);
    });
    report("gather_rows " + s, nmse(res.first, res.second), kTolExact);
    for (int acc = 0; acc < 2; ++acc) {
      auto res2 = run2([&](const Backend* k) {
        auto drows = up(k, rows), dbase = up(k, base);
        k->scatter_rows(dbase.data(), drows.data(), B, C, L, L - 1, acc);
        return down(k, dbase);
      });
      report(std::string("scatter_rows") + (acc ? " acc " : " ") + s, nmse(res2.first, res2.second), kTolExact);
    }
    std::vector<int> idx(B);  // distinct rows, one per sequence, at varying positions
    for (int b = 0; b < B; ++b) idx[b] = b * L + r.below(L);
    auto res3 = run2([&](const Backend* k) {
      auto dsrc = up(k, src);
      auto didx = up(k, idx);
      BackendBuffer<float> dst(k, (size_t)B * C);
      k->gather_rows_at(dst.data(), dsrc.data(), didx.data(), B, C);
      return down(k, dst);
    });
    report("gather_rows_at " + s, nmse(res3.first, res3.second), kTolExact);
    for (int acc = 0; acc < 2; ++acc) {
      auto res4 = run2([&](const Backend* k) {
        auto drows = up(k, rows), dbase = up(k, base);
        auto didx = up(k, idx);
        k->scatter_rows_at(dbase.data(), drows.data(), didx.data(), B, C, acc);
        return down(k, dbase);
      });
      report(std::string("scatter_rows_at") + (acc ? " acc " : " ") + s, nmse(res4.first, res4.second), kTolExact);
    }
  }
  auto P = randn(r, (size_t)B * V);
  for (auto& x : P) x = std::fabs(x) / V;
  auto labels = randint(r, B, V);
  {
    auto res = run2([&](const Backend* k) {
      auto dP = up(k, P);
      auto dl = up(k, labels);
      BackendBuffer<float> A(k, P.size());
      k->onehot_sub(A.data(), dP.data(), dl.data(), B, V);
      return down(k, A);
    });
    report("onehot_sub " + s, nmse(res.first, res.second), kTolExact);
  }
  auto Gm = randn(r, (size_t)B * V);
  {
    auto res = run2([&](const Backend* k) {
      auto a = up(k, P), b = up(k, Gm);
      BackendBuffer<double> out(k, B);
      k->row_dot(out.data(), a.data(), b.data(), B, V);
      return down(k, out);
    });
    report("row_dot " + s, nmse(res.first, res.second), 1e-20);
    auto res2 = run2([&](const Backend* k) {
      auto a = up(k, P), b = up(k, Gm);
      BackendBuffer<float> out(k, P.size());
      k->softmax_jvp_rows(out.data(), a.data(), b.data(), B, V);
      return down(k, out);
    });
    report("softmax_jvp_rows " + s, nmse(res2.first, res2.second), kTolExact);
  }
  for (int noisy = 0; noisy < 2; ++noisy) {
    auto RA = randn(r, (size_t)n * B), RH = randn(r, (size_t)n * B), SA = randn(r, (size_t)B * B),
         SH = randn(r, (size_t)B * B);
    for (int j = 0; j < B; ++j) SA[(size_t)j * B + j] = std::fabs(SA[(size_t)j * B + j]) + 1.f, SH[(size_t)j * B + j] = std::fabs(SH[(size_t)j * B + j]) + 1.f;
    std::vector<double> nd(B);
    for (auto& x : nd) x = r.normal();
    auto res = run2([&](const Backend* k) {
      auto a = up(k, RA), b = up(k, RH), c = up(k, SA), d = up(k, SH);
      auto e = up(k, nd);
      BackendBuffer<GmScalars> out(k, 1);
      BackendBuffer<float> per(k, B), loss(k, 1);
      k->gm_combine(out.data(), per.data(), loss.data(), a.data(), b.data(), c.data(), d.data(),
                    noisy ? e.data() : nullptr, n, B, 3.7);
      auto o = down(k, out);
      std::vector<double> v = {o[0].S, o[0].Q, o[0].cosine, o[0].f, o[0].cS, o[0].cN, o[0].cQ};
      for (float x : down(k, per)) v.push_back(x);
      v.push_back(down(k, loss)[0]);
      return v;
    });
    report(std::string("gm_combine") + (noisy ? " noise " : " ") + s, nmse(res.first, res.second), kTolExact);
  }
  {
    auto x = randn(r, 1000), y = randn(r, 1000);
    std::vector<float> k2 = {-0.37f};
    auto res = run2([&](const Backend* k) {
      auto dx = up(k, x), dy = up(k, y), dk = up(k, k2);
      k->scale_by(dx.data(), 1000, dk.data());
      k->axpy_by(dy.data(), dx.data(), 1000, dk.data());
      k->fill(dx.data(), 7, 2.5f);
      auto a = down(k, dx), b = down(k, dy);
      a.insert(a.end(), b.begin(), b.end());
      return a;
    });
    report("scale_by + axpy_by + fill", nmse(res.first, res.second), kTolExact);
  }
  {
    const long row_n = (long)L * C, free_n = (long)free_len * C, tot = (long)B * row_n;
    auto X = randn(r, tot), dX = randn(r, tot, 0.01f), z = randn(r, tot), lam = randn(r, tot, 0.1f),
         m = randn(r, tot, 0.01f), v = randn(r, tot, 0.01f);
    for (auto& q : v) q = q * q;
    for (float max_norm : {0.f, 1.f}) {
      auto res = run2([&](const Backend* k) {
        auto dXb = up(k, X), ddX = up(k, dX), dz = up(k, z), dl = up(k, lam), dm = up(k, m), dv = up(k, v);
        BackendBuffer<float> g(k, tot);
        BackendBuffer<double> ns(k, 1024);
        k->x_adam_step(dXb.data(), dm.data(), dv.data(), ddX.data(), dz.data(), dl.data(), g.data(), ns.data(), B, row_n,
                       free_n, 0.1f, max_norm, 0.9f, 0.999f, 1e-8f, 0.008f / (1.f - 0.9f), std::sqrt(1.f - 0.999f));
        auto a = down(k, dXb), b = down(k, dm), c = down(k, dv);
        a.insert(a.end(), b.begin(), b.end());
        a.insert(a.end(), c.begin(), c.end());
        return a;
      });
      report(std::string("x_adam_step") + (max_norm > 0 ? " clipped " : " ") + s, nmse(res.first, res.second),
             kTolExact);
    }
  }
}

// =================================================================================================================
// model and method checks against the CPU engine (gpt2.cpp, gradmatch.cpp, admm.cpp)

// norm weights near 1, everything else (biases included) N(0, 0.15²)
static void init_params(CausalLM& m, Rng& r) {
  float* p = m.params();
  for (const auto& t : m.param_table()) {
    const bool norm_w = (t.name.find("ln_") != std::string::npos || t.name.find("norm") != std::string::npos) &&
                        t.name.find(".weight") != std::string::npos;
    for (size_t i = 0; i < t.numel(); ++i) p[t.offset + i] = norm_w ? 1.f + 0.1f * r.normal() : 0.15f * r.normal();
  }
}

// the tiny models of the model and method checks
static GPT2Config gpt2_config(int V, int C, int NH) {
  GPT2Config cfg;
  cfg.vocab_size = V;
  cfg.max_seq_len = 16;
  cfg.channels = C;
  cfg.num_layers = 2;
  cfg.num_heads = NH;
  return cfg;
}
// Qwen2-like: grouped-query (6 query heads, 2 kv heads), q/k/v biases, untied lm_head, llama3-scaled RoPE
static LlamaConfig qwen2_like(int V) {
  LlamaConfig cfg;
  cfg.vocab_size = V;
  cfg.hidden_size = 48;
  cfg.intermediate_size = 80;
  cfg.num_layers = 2;
  cfg.num_heads = 6;
  cfg.num_kv_heads = 2;
  cfg.max_seq_len = 16;
  cfg.rms_norm_eps = 1e-5f;
  cfg.rope_scaling.llama3 = true;
  cfg.rope_scaling.original_max_position_embeddings = 8;
  cfg.attention_bias = true;
  return cfg;
}
// Llama with one kv head (multi-query), head_dim 14 (q width ≠ channels), every bias, tied lm_head, plain RoPE
static LlamaConfig llama_mqa_tied(int V) {
  LlamaConfig cfg = qwen2_like(V);
  cfg.hidden_size = 40;
  cfg.intermediate_size = 72;
  cfg.num_heads = 4;
  cfg.num_kv_heads = 1;
  cfg.head_dim = 14;
  cfg.rope_theta = 500000.0;
  cfg.rope_scaling = RopeScaling();
  cfg.tie_word_embeddings = true;
  cfg.o_proj_bias = cfg.mlp_bias = true;
  return cfg;
}

// The family's executor (make_exec) against the CPU model `ref`: forward and backward from input embeddings and from
// tokens, parameter gradients, KV-cached decoding continuing a shared prefix.
static void check_model(const Backend* be, Rng& r, CausalLM& ref, const std::string& name, double tol) {
  init_params(ref, r);
  auto ex = make_exec(be, ref);
  const int B = 3, T = 11, C = ref.dims().channels, V = ref.dims().vocab_size;
  const std::string s = name + " (B=3,T=11,C=" + std::to_string(C) + ",V=" + std::to_string(V) + ")";

  // input embeddings, logits at the last position, targets: forward, then backward from given d_logits + d_hidden
  auto X = randn(r, (size_t)B * T * C, 0.5f);
  auto labels = randint(r, B, V);
  std::vector<float> mask((size_t)B * T, 0.f);
  std::vector<int> targets((size_t)B * T, 0);
  for (int b = 0; b < B; ++b) mask[(size_t)b * T + T - 1] = 1.f, targets[(size_t)b * T + T - 1] = labels[b];
  CausalLM::ForwardArgs fa;
  fa.embeds = X.data();
  fa.B = B;
  fa.T = T;
  fa.targets = targets.data();
  fa.loss_mask = mask.data();
  const float loss_ref = ref.forward(fa);
  auto dX = up(be, X);
  auto dlab = up(be, labels);
  CausalExec::Forward ef;
  ef.embeds = dX.data();
  ef.B = B;
  ef.T = T;
  ef.last_only = true;
  ef.targets = dlab.data();
  ex->forward(ef);
  std::vector<float> probs((size_t)B * V), hidden((size_t)B * T * C);
  be->to_host(probs.data(), ex->probs(), sizeof(float) * probs.size());
  be->to_host(hidden.data(), ex->hidden(), sizeof(float) * hidden.size());
  report(s + " forward probs (embeds, last position)",
         nmse(probs, std::vector<float>(ref.probs(), ref.probs() + probs.size())), tol);
  report(s + " forward hidden", nmse(hidden, std::vector<float>(ref.hidden(), ref.hidden() + hidden.size())), tol);
  const double l = ex->mean_loss();
  report(s + " forward loss", (l - loss_ref) * (l - loss_ref) / (loss_ref * loss_ref), tol);

  auto dlog = randn(r, (size_t)B * V, 0.1f), dhid = randn(r, (size_t)B * T * C, 0.01f);
  std::vector<float> dE_ref((size_t)B * T * C, 0.f);
  ref.zero_grads();
  CausalLM::BackwardArgs ba;
  ba.from_loss = true;
  ba.d_logits = dlog.data();
  ba.d_hidden = dhid.data();
  ba.param_grads = true;
  ba.d_embeds = dE_ref.data();
  ref.backward(ba);
  auto ddlog = up(be, dlog), ddhid = up(be, dhid);
  auto dE = up(be, std::vector<float>((size_t)B * T * C, 0.f));
  ex->zero_grads();
  CausalExec::Backward eb;
  eb.from_loss = true;
  eb.d_logits = ddlog.data();
  eb.d_hidden = ddhid.data();
  eb.param_grads = true;
  eb.d_embeds = dE.data();
  ex->backward(eb);
  report(s + " backward d_embeds", nmse(down(be, dE), dE_ref), tol);
  std::vector<float> grads(ex->num_params());
  be->to_host(grads.data(), ex->grads(), sizeof(float) * grads.size());
  report(s + " backward parameter grads",
         nmse(grads, std::vector<float>(ref.grads(), ref.grads() + ref.num_params())), tol);
  // the input gradient alone (no parameter gradients), as the matcher runs it
  std::vector<float> dE_ref2((size_t)B * T * C, 0.f);
  ba.from_loss = false;
  ba.param_grads = false;
  ba.d_embeds = dE_ref2.data();
  ref.backward(ba);
  auto dE2 = up(be, std::vector<float>((size_t)B * T * C, 0.f));
  eb.from_loss = false;
  eb.param_grads = false;
  eb.d_embeds = dE2.data();
  ex->backward(eb);
  report(s + " backward d_embeds (no parameter grads)", nmse(down(be, dE2), dE_ref2), tol);

  // tokens, logits everywhere, loss gradient into the parameters (the embeddings through the input side and, when
  // tied, the lm_head)
  auto tokens = randint(r, (size_t)B * T, V), tg = randint(r, (size_t)B * T, V);
  CausalLM::ForwardArgs fb;
  fb.tokens = tokens.data();
  fb.B = B;
  fb.T = T;
  fb.targets = tg.data();
  const float loss2 = ref.forward(fb);
  auto dtok = up(be, tokens), dtg = up(be, tg);
  CausalExec::Forward ef2;
  ef2.tokens = dtok.data();
  ef2.B = B;
  ef2.T = T;
  ef2.last_only = false;
  ef2.targets = dtg.data();
  ex->forward(ef2);
  const double l2 = ex->mean_loss();
  report(s + " forward loss (tokens, all positions)", (l2 - loss2) * (l2 - loss2) / (loss2 * loss2), tol);
  ref.zero_grads();
  CausalLM::BackwardArgs bb;
  ref.backward(bb);
  ex->zero_grads();
  CausalExec::Backward eb2;
  eb2.from_loss = true;
  eb2.param_grads = true;
  ex->backward(eb2);
  be->to_host(grads.data(), ex->grads(), sizeof(float) * grads.size());
  report(s + " backward parameter grads (tokens)",
         nmse(grads, std::vector<float>(ref.grads(), ref.grads() + ref.num_params())), tol);

  // logits at listed positions (buildTarget's forward: each row's last real token; a loss mask on the CPU), then
  // the loss gradient into the parameters through them
  std::vector<int> listed(B), tg3((size_t)B * T, 0);
  std::vector<float> mask3((size_t)B * T, 0.f);
  for (int b = 0; b < B; ++b) {
    listed[b] = b * T + T - 1 - 2 * b;
    mask3[listed[b]] = 1.f;
    tg3[listed[b]] = labels[b];
  }
  CausalLM::ForwardArgs fc;
  fc.tokens = tokens.data();
  fc.B = B;
  fc.T = T;
  fc.targets = tg3.data();
  fc.loss_mask = mask3.data();
  const float loss3 = ref.forward(fc);
  auto dlisted = up(be, listed);
  CausalExec::Forward ef3;
  ef3.tokens = dtok.data();
  ef3.B = B;
  ef3.T = T;
  ef3.rows = dlisted.data();
  ef3.n_rows = B;
  ef3.targets = dlab.data();
  ex->forward(ef3);
  be->to_host(probs.data(), ex->probs(), sizeof(float) * probs.size());
  report(s + " forward probs (tokens, listed positions)",
         nmse(probs, std::vector<float>(ref.probs(), ref.probs() + probs.size())), tol);
  std::vector<float> hrows((size_t)B * C), hrows_ref((size_t)B * C);
  be->to_host(hrows.data(), ex->hidden_rows(), sizeof(float) * hrows.size());
  for (int b = 0; b < B; ++b)
    std::memcpy(&hrows_ref[(size_t)b * C], ref.hidden() + (size_t)listed[b] * C, sizeof(float) * C);
  report(s + " forward hidden rows (listed positions)", nmse(hrows, hrows_ref), tol);
  const double l3 = ex->mean_loss();
  report(s + " forward loss (listed positions)", (l3 - loss3) * (l3 - loss3) / (loss3 * loss3), tol);
  ref.zero_grads();
  ref.backward(bb);
  ex->zero_grads();
  ex->backward(eb2);
  be->to_host(grads.data(), ex->grads(), sizeof(float) * grads.size());
  report(s + " backward parameter grads (listed positions)",
         nmse(grads, std::vector<float>(ref.grads(), ref.grads() + ref.num_params())), tol);

  // KV-cached decoding continuing a shared 5-token prefix: 2 new positions, then 1, then 1
  KVCache prefix(ref.dims(), 1, 5);
  auto ptok = randint(r, 5, V);
  std::vector<float> plog(V), lref((size_t)B * V);
  ref.decode(prefix, ptok.data(), nullptr, 5, plog.data(), nullptr);
  KVCache rows(ref.dims(), B, 4, &prefix);
  ExecKVCache erows(be, ref.dims(), B, 4, &prefix);
  BackendBuffer<float> dec_logits(be, (size_t)B * V);
  for (int Tn : {2, 1, 1}) {
    auto toks = randint(r, (size_t)B * Tn, V);
    ref.decode(rows, toks.data(), nullptr, Tn, lref.data(), nullptr);
    auto dt = up(be, toks);
    ex->decode(erows, dt.data(), nullptr, Tn, dec_logits.data());
    report(s + " decode logits (prefix 5, " + std::to_string(erows.length) + " decoded)", nmse(down(be, dec_logits), lref),
           tol);
  }
}

static void check_models(const Backend* be, Rng& r, double tol) {
  {
    GPT2 ref(gpt2_config(97, 48, 4));
    check_model(be, r, ref, "GPT2", tol);
  }
  {
    Llama ref(qwen2_like(97));
    check_model(be, r, ref, "Llama GQA q/k/v bias untied", tol);
  }
  {
    Llama ref(llama_mqa_tied(89));
    check_model(be, r, ref, "Llama MQA hd=14 biases tied", tol);
  }
}

// build_target, match_loss, x_update and project of the CPU engine against the executor's (ExecMatcher,
// exec_project). tol_tok: the fraction of projected tokens allowed to differ.
static void check_admm(const Backend* be, Rng& r, CausalLM& ref, const std::string& name, double tol_f, double tol_x,
                       double tol_tok) {
  init_params(ref, r);
  const int n = 6, T = 9, B = 4, L = 7, free_len = 5, C = ref.dims().channels, V = ref.dims().vocab_size, label = 17;
  auto tokens = randint(r, (size_t)n * T, V);
  std::vector<int> last_pos(n), labels(n);
  for (int i = 0; i < n; ++i) last_pos[i] = 3 + r.below(T - 3), labels[i] = r.below(V);
  for (int noisy = 0; noisy < 2; ++noisy) {
    const std::string s = name + (noisy ? " (n=6,B=4,L=7,DP noise)" : " (n=6,B=4,L=7)");
    TargetOptions opts;
    opts.clip_norm = 0.5f;
    opts.noise_std = noisy ? 0.001f : 0.f;
    opts.noise_seed = 11;
    MatchTarget t = build_target(ref, tokens.data(), n, T, last_pos.data(), labels.data(), opts);
    ExecTarget et(be, t);
    auto ex = make_exec(be, ref);
    ExecMatcher em(*ex, et);
    auto X = randn(r, (size_t)B * L * C, 0.7f);
    std::vector<float> dX_ref(X.size()), per_ref(B), per(B);
    const double f_ref = match_loss(ref, t, X.data(), B, L, label, dX_ref.data(), per_ref.data());
    auto dXb = up(be, X);
    BackendBuffer<float> dX(be, X.size());
    const double f = em.match_loss(dXb.data(), B, L, label, dX.data(), per.data());
    report("match_loss f " + s, (f - f_ref) * (f - f_ref) / (f_ref * f_ref), tol_f);
    report("match_loss per-sample " + s, nmse(per, per_ref), tol_f);
    report("match_loss dX " + s, nmse(down(be, dX), dX_ref), tol_x);

    // one ADMM inner loop (x-update, 3 steps) end to end
    XUpdateArgs a;
    a.B = B, a.L = L, a.free_len = free_len, a.label = label, a.steps = 3, a.rho = 0.1f, a.lr = 0.01f;
    a.max_grad_norm = noisy ? 1e-3f : 1.f;  // the second run clips
    auto z = randn(r, X.size(), 0.7f), lam = randn(r, X.size(), 0.05f);
    auto Xr = X;
    std::vector<float> mr(X.size(), 0.f), vr(X.size(), 0.f), losses_ref(a.steps), losses(a.steps);
    int tr = 0, td = 0;
    const double fx_ref = x_update(ref, t, Xr.data(), z.data(), lam.data(), a, mr.data(), vr.data(), &tr, losses_ref.data());
    auto dz = up(be, z), dlam = up(be, lam), dm = up(be, std::vector<float>(X.size(), 0.f)),
         dv = up(be, std::vector<float>(X.size(), 0.f));
    auto dXu = up(be, X);
    const double fx = em.x_update(dXu.data(), dz.data(), dlam.data(), a, dm.data(), dv.data(), &td, losses.data());
    report("x_update X after 3 steps " + s, nmse(down(be, dXu), Xr), tol_x);
    report("x_update losses " + s, nmse(losses, losses_ref), tol_f);
    report("x_update final f " + s, (fx - fx_ref) * (fx - fx_ref) / (fx_ref * fx_ref), tol_f);
    report("x_update adam state m " + s, nmse(down(be, dm), mr), tol_x);
    if (td != tr) report("x_update step counter", 1.0, 0.0);

    // the projection: KV-cached decoding after a 4-token prompt, top-k by cosine, the LM's choice
    KVCache prefix(ref.dims(), 1, 4);
    auto prompt = randint(r, 4, V);
    std::vector<float> plog(V);
    ref.decode(prefix, prompt.data(), nullptr, 4, plog.data(), nullptr);
    std::vector<uint8_t> allowed(V);
    for (int v = 0; v < V; ++v) allowed[v] = v % 7 != 3;
    std::vector<int> tok_ref((size_t)B * free_len), tok(tok_ref.size());
    const int topk = noisy ? V : 6;
    project(ref, Xr.data(), B, L, free_len, allowed.data(), topk, prefix, plog.data(), tok_ref.data());
    exec_project(*ex, ref.input_embeddings(), Xr.data(), B, L, free_len, allowed.data(), topk, prefix, plog.data(),
                 tok.data());
    int differ = 0;
    for (size_t i = 0; i < tok.size(); ++i) differ += tok[i] != tok_ref[i];
    report("project tokens (fraction differing, top-k " + std::to_string(topk) + ") " + s, (double)differ / tok.size(),
           tol_tok);
  }
}

static void check_admms(const Backend* be, Rng& r, double tol_f, double tol_x, double tol_tok) {
  {
    GPT2 ref(gpt2_config(211, 40, 5));
    check_admm(be, r, ref, "GPT2", tol_f, tol_x, tol_tok);
  }
  {
    Llama ref(qwen2_like(211));
    check_admm(be, r, ref, "Llama GQA", tol_f, tol_x, tol_tok);
  }
  {
    Llama ref(llama_mqa_tied(199));
    check_admm(be, r, ref, "Llama MQA tied", tol_f, tol_x, tol_tok);
  }
}

// The projection's choice: the table's project_choose against admm.cpp choose_tokens (exact ids), and choose_tokens
// itself against a full sort of the (key, id) pairs. Modes: 0 random values; 1 heavy ties (similarities and logits
// from a handful of values, a quarter of the tokens of norm zero so their keys are −0 or +0, some ±inf similarities
// and logits, +0 and −0 logits); 2 every key and every logit equal (the choice falls to the ids alone).
static void check_project_choose(const Backend* be, Rng& r, int B, int V, int n_allowed, int k, int mode) {
  const std::string s = "(B=" + std::to_string(B) + ",V=" + std::to_string(V) + ",allowed=" +
                        std::to_string(n_allowed) + ",k=" + std::to_string(k) +
                        (mode == 1 ? ",ties" : mode == 2 ? ",all equal" : "") + ")";
  std::vector<int> ids(V);
  for (int v = 0; v < V; ++v) ids[v] = v;
  std::shuffle(ids.begin(), ids.end(), r.gen);
  ids.resize(n_allowed);
  std::sort(ids.begin(), ids.end());
  std::vector<float> sims((size_t)B * V), logits((size_t)B * V), inv_norm(V);
  for (int v = 0; v < V; ++v)
    inv_norm[v] = mode == 2 ? 1.f : mode == 1 ? (r.below(4) == 0 ? 0.f : r.below(2) ? 1.f : 0.5f)
                                              : 1.f / (0.1f + std::fabs(r.normal()));
  for (size_t i = 0; i < sims.size(); ++i) {
    const int v = (int)(i % V);
    if (mode == 2) {
      sims[i] = 0.25f, logits[i] = -1.5f;
    } else if (mode == 1) {
      sims[i] = 0.5f * (float)(r.below(5) - 2);  // −1 … 1, zero included (keys −0 for +0 and 0 similarities)
      if (inv_norm[v] > 0 && r.below(61) == 0) sims[i] = r.below(2) ? INFINITY : -INFINITY;  // never inf·0
      const int l = r.below(9);
      logits[i] = l == 0 ? -0.f : l == 1 ? 0.f : l == 2 ? 2.f : l == 3 ? -2.f : l == 4 ? 1.f
                : l == 5 ? -INFINITY : l == 6 && r.below(8) == 0 ? INFINITY : 1.5f;
    } else {
      sims[i] = r.normal();
      logits[i] = 3.f * r.normal();
    }
  }
  std::vector<int> ref(B, -1), brute(B, -1);
  choose_tokens(ref.data(), sims.data(), logits.data(), inv_norm.data(), ids.data(), n_allowed, B, V, k);
  for (int b = 0; b < B; ++b) {
    std::vector<std::pair<float, int>> cand(n_allowed);
    for (int j = 0; j < n_allowed; ++j) cand[j] = {-sims[(size_t)b * V + ids[j]] * inv_norm[ids[j]], ids[j]};
    std::sort(cand.begin(), cand.end());
    int best = cand[0].second;
    for (int j = 1; j < k; ++j) {
      const int v = cand[j].second;
      const float lv = logits[(size_t)b * V + v], lb = logits[(size_t)b * V + best];
      if (lv > lb || (lv == lb && v < best)) best = v;
    }
    brute[b] = best;
  }
  auto differing = [&](const std::vector<int>& got) {
    int d = 0;
    for (int b = 0; b < B; ++b) d += got[b] != ref[b];
    return (double)d / B;
  };
  report("choose_tokens = full sort " + s, differing(brute), 0.0);
  auto dsims = up(be, sims), dlogits = up(be, logits), dinv = up(be, inv_norm);
  auto dids = up(be, ids);
  BackendBuffer<int> dchosen(be, B);
  be->project_choose(dchosen.data(), dsims.data(), dlogits.data(), dinv.data(), dids.data(), n_allowed, B, V, k);
  report("project_choose " + s, differing(down(be, dchosen)), 0.0);
}

// project_choose's argument checks: k outside [1, n_allowed], no token allowed.
static void check_project_choose_args(const Backend* be) {
  BackendBuffer<float> f(be, 8);
  BackendBuffer<int> ids(be, 4), chosen(be, 2);
  auto throws = [&](int n_allowed, int k) {
    try {
      be->project_choose(chosen.data(), f.data(), f.data(), f.data(), ids.data(), n_allowed, 2, 4, k);
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  report("project_choose rejects k = 0, k > n_allowed, n_allowed = 0",
         throws(4, 0) && throws(3, 4) && throws(0, 1) ? 0.0 : 1.0, 0.0);
}

// =================================================================================================================

static void run_op_checks(const Backend* be, double gemm_tol_f32) {
  Rng r(1234);
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
  check_attention(be, r, 1, 1, 4, 1, gemm_tol_f32);
  check_attention(be, r, 2, 7, 24, 3, gemm_tol_f32);
  check_attention(be, r, 3, 37, 64, 4, gemm_tol_f32);
  check_attention(be, r, 1, 70, 48, 2, gemm_tol_f32);
  check_attention_decode(be, r, 1, 1, 4, 1, 0, 0, 1, gemm_tol_f32);
  check_attention_decode(be, r, 5, 1, 24, 3, 9, 4, 11, gemm_tol_f32);
  check_attention_decode(be, r, 3, 4, 64, 4, 17, 0, 6, gemm_tol_f32);
  check_attention_decode(be, r, 2, 2, 48, 2, 0, 30, 40, gemm_tol_f32);
  check_elementwise(be, r, 1);
  check_elementwise(be, r, 1001);
  check_elementwise(be, r, 300007);
  check_crossentropy(be, r, 1, 5);
  check_crossentropy(be, r, 7, 1001);
  check_crossentropy(be, r, 5, 50257);
  check_adamw(be, r, 1);
  check_adamw(be, r, 100003);
  check_gradmatch_ops(be, r, 1, 1, 9, 4, 3, 2);
  check_gradmatch_ops(be, r, 37, 6, 1009, 48, 7, 5);
  // the Llama family: odd shapes, NKV < NH, head sizes not a multiple of 32
  check_embedding_lookup(be, r, 2, 5, 7, 11);
  check_embedding_lookup(be, r, 3, 17, 64, 50);
  check_rmsnorm(be, r, 1, 1);
  check_rmsnorm(be, r, 13, 37);
  check_rmsnorm(be, r, 70, 768);
  check_rope(be, r, 1, 1, 1, 1, 2, 0, false);
  check_rope(be, r, 2, 7, 6, 2, 10, 0, true);
  check_rope(be, r, 3, 5, 4, 1, 18, 9, true);
  check_rope(be, r, 1, 37, 8, 8, 64, 3, false);
  check_swiglu(be, r, 1);
  check_swiglu(be, r, 1001);
  check_swiglu(be, r, 300007);
  check_linear(be, r, 1, 1, 1, 0, true, gemm_tol_f32);
  check_linear(be, r, 9, 13, 39, 0, true, gemm_tol_f32);
  check_linear(be, r, 67, 64, 24, 37, true, gemm_tol_f32);  // a k slice of a packed qkv row
  check_linear(be, r, 33, 50, 70, 5, false, gemm_tol_f32);
  check_gqa_attention(be, r, 1, 1, 1, 1, 2, gemm_tol_f32);
  check_gqa_attention(be, r, 2, 7, 6, 2, 10, gemm_tol_f32);
  check_gqa_attention(be, r, 3, 37, 4, 1, 18, gemm_tol_f32);
  check_gqa_attention(be, r, 2, 13, 3, 3, 6, gemm_tol_f32);
  check_gqa_attention(be, r, 1, 70, 8, 2, 64, gemm_tol_f32);
  check_gqa_decode(be, r, 1, 1, 1, 1, 2, 0, 0, 1, gemm_tol_f32);
  check_gqa_decode(be, r, 5, 1, 6, 2, 10, 9, 4, 11, gemm_tol_f32);
  check_gqa_decode(be, r, 3, 4, 4, 1, 18, 17, 0, 6, gemm_tol_f32);
  check_gqa_decode(be, r, 2, 2, 8, 2, 64, 0, 30, 40, gemm_tol_f32);
  // the projection's choice: k = 1, k = n_allowed, n_allowed < V, heavy ties, GPT-2 and Llama-3 vocabularies
  check_project_choose(be, r, 1, 1, 1, 1, 0);
  check_project_choose(be, r, 3, 50, 50, 1, 1);
  check_project_choose(be, r, 3, 50, 50, 50, 1);
  check_project_choose(be, r, 5, 1009, 700, 6, 1);
  check_project_choose(be, r, 5, 1009, 700, 700, 1);
  check_project_choose(be, r, 5, 1009, 700, 350, 1);  // the k-th key among the ±0 keys
  check_project_choose(be, r, 6, 1009, 1, 1, 1);
  check_project_choose(be, r, 2, 1009, 300, 37, 0);
  check_project_choose(be, r, 3, 1000, 999, 10, 2);
  check_project_choose(be, r, 2, 1000, 999, 999, 2);
  check_project_choose(be, r, 7, 4099, 4099, 4099, 0);
  check_project_choose(be, r, 4, 50257, 50257, 200, 0);
  check_project_choose(be, r, 4, 50257, 40000, 200, 1);
  check_project_choose(be, r, 4, 50257, 40000, 20000, 1);
  check_project_choose(be, r, 2, 128256, 100000, 1000, 1);
  check_project_choose(be, r, 9, 128256, 128256, 200, 0);
  check_project_choose_args(be);
}

int main() {
  // ---- 1. host: the harness, the CPU table and the table-driven model and method against the CPU engine ----
  g_prefix = "cpu-table ";
  try {
    run_op_checks(cpu_backend(), kTolExact);
    Rng r(99);
    check_models(cpu_backend(), r, 0.0);  // the table-driven executors equal the CPU engine bit for bit
    check_admms(cpu_backend(), r, 0.0, 0.0, 0.0);
  } catch (const std::exception& e) {
    std::printf("FAIL cpu-table checks threw: %s\n", e.what());
    g_failed++;
  }

  // ---- 2. device ----
  const cuda::Probe& p = cuda::probe();
  const Backend* dev = cuda_backend();
  if (!dev) {
    std::printf("SKIP: no CUDA device (%s)\n", p.error.c_str());
  } else {
    const auto bi = cuda::build_info();
    std::printf("device: %s, %.1f GiB, compute capability %d.%d; build: archs %s, cuBLAS %s, CUDA runtime %d\n",
                p.devices[0].name.c_str(), p.devices[0].memory / 1073741824.0, p.devices[0].major, p.devices[0].minor,
                bi.archs, bi.cublas ? "yes" : "no", bi.cuda_runtime);
    try {
      g_prefix = "cuda ";
      cuda::set_gemm_mode(cuda::GemmMode::F32);  // exact path for the op checks
      run_op_checks(dev, kTolExact);
      Rng r(4321);
      const std::vector<cuda::GemmMode> modes = {cuda::GemmMode::TF32, cuda::GemmMode::CublasF32, cuda::GemmMode::CublasTF32};
      for (cuda::GemmMode m : modes) {
        if ((m == cuda::GemmMode::CublasF32 || m == cuda::GemmMode::CublasTF32) && !cuda::have_cublas()) continue;
        cuda::set_gemm_mode(m);
        const double tol = m == cuda::GemmMode::CublasF32 ? kTolExact : kTolTF32;
        const char* name = cuda::gemm_mode_name(m);
        check_gemm(dev, r, name, tol, 7, 13, 5);
        check_gemm(dev, r, name, tol, 130, 70, 33);
        check_gemm(dev, r, name, tol, 5, 70, 4099);
        check_gemm(dev, r, name, tol, 256, 192, 128);
        check_attention(dev, r, 2, 37, 64, 4, tol);
        check_gqa_attention(dev, r, 2, 37, 8, 2, 24, tol);
        check_linear(dev, r, 67, 64, 24, 37, true, tol);
      }
      cuda::set_gemm_mode(cuda::GemmMode::F32);
      check_models(dev, r, 1e-9);
      // X: an Adam step near g = 0 may flip sign (2·lr) on one coordinate; projected tokens: a near-tie among the
      // top-k may fall the other way, and every later position of that row follows it
      check_admms(dev, r, 1e-9, 1e-5, 0.2);
      cuda::set_gemm_mode(cuda::GemmMode::Auto);
      g_prefix = std::string("cuda ") + cuda::gemm_mode_name(cuda::resolved_gemm_mode()) + " ";
      check_models(dev, r, 1e-4);
      check_admms(dev, r, 1e-4, 1e-2, 1.0);  // tokens under TF32: reported, not judged
    } catch (const std::exception& e) {
      std::printf("FAIL cuda checks threw: %s\n", e.what());
      g_failed++;
    }
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
