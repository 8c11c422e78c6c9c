// The Llama family's ops and the attention (llama_ops.h; multi-head attention is the grouped-query op with as many
// kv heads as heads) on a backend against their CPU specification.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "harness.h"
#include "llama_ops.h"
#include "method_ops.h"
#include "ops.h"

namespace gradmm {
namespace check {
// embedding_forward without positions (wpe = nullptr) is the token lookup (scale: Gemma's sqrt(hidden_size));
// embedding_backward without dwpe
static void check_embedding_lookup(const Backend* be, Rng& r, int B, int T, int C, int V, float scale = 1.f) {
  const std::string s = "(" + std::to_string(B) + "," + std::to_string(T) + "," + std::to_string(C) +
                        (scale != 1.f ? ",scale)" : ")");
  auto tokens = randint(r, (size_t)B * T, V);
  auto wte = randn(r, (size_t)V * C);
  std::vector<float> out((size_t)B * T * C);
  embedding_forward(out.data(), tokens.data(), wte.data(), (const float*)nullptr, B, T, C, 0, scale);
  auto dtok = up(be, tokens);
  auto dwte = up(be, wte);
  BackendBuffer<float> dout(be, out.size());
  be->embedding_forward(dout.data(), dtok.data(), dwte.data(), nullptr, B, T, C, 0, scale);
  report("embedding_forward no wpe " + s, nmse(down(be, dout), out), kTolExact);
  auto g = randn(r, out.size()), gwte = randn(r, wte.size());
  auto rwte = gwte;
  embedding_backward(rwte.data(), (float*)nullptr, g.data(), tokens.data(), B, T, C, 0, scale);
  auto dg = up(be, g), dgwte = up(be, gwte);
  be->embedding_backward(dgwte.data(), nullptr, dg.data(), dtok.data(), B, T, C, 0, scale);
  report("embedding_backward no dwpe " + s, nmse(down(be, dgwte), rwte), kTolExact);
}

// heads groups of C channels per row of stride ld (ld = heads·C: contiguous rows; more: Gemma's q/k norm over the
// heads of a packed qkv row, the rest of each row untouched), weights offset by w_offset (Gemma: 1)
static void check_rmsnorm(const Backend* be, Rng& r, int N, int C, int heads = 1, int ld = 0, float w_offset = 0.f) {
  if (ld == 0) ld = heads * C;
  const std::string s = "(" + std::to_string(N) + "," + std::to_string(C) + ",heads=" + std::to_string(heads) +
                        ",ld=" + std::to_string(ld) + ",offset=" + std::to_string(w_offset) + ")";
  const size_t G = (size_t)N * heads;
  auto x = randn(r, (size_t)N * ld, 2.f), w = randn(r, C), base = randn(r, x.size());
  std::vector<float> out = base, rstd(G);
  rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, heads, ld, w_offset);
  auto dx = up(be, x), dw = up(be, w);
  auto dout = up(be, base);
  BackendBuffer<float> drstd(be, G);
  be->rmsnorm_forward(dout.data(), drstd.data(), dx.data(), dw.data(), N, C, 1e-5f, heads, ld, w_offset);
  report("rmsnorm_forward out " + s, nmse(down(be, dout), out), kTolExact);
  report("rmsnorm_forward rstd " + s, nmse(down(be, drstd), rstd), kTolExact);
  auto dout2 = up(be, base);
  be->rmsnorm_forward(dout2.data(), nullptr, dx.data(), dw.data(), N, C, 1e-5f, heads, ld, w_offset);
  report("rmsnorm_forward no rstd " + s, nmse(down(be, dout2), out), kTolExact);
  auto g = randn(r, out.size()), gin = randn(r, x.size()), gw = randn(r, C);
  auto rin = gin, rw = gw;
  rmsnorm_backward(rin.data(), rw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C, heads, ld, w_offset);
  auto dg = up(be, g), dgin = up(be, gin), dgw = up(be, gw);
  be->rmsnorm_backward(dgin.data(), dgw.data(), dg.data(), dx.data(), dw.data(), drstd.data(), N, C, heads, ld,
                       w_offset);
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

static void check_geglu(const Backend* be, Rng& r, long N) {
  const std::string s = "(" + std::to_string(N) + ")";
  auto gate = randn(r, N, 3.f), upv = randn(r, N), g = randn(r, N);
  std::vector<float> out(N);
  geglu_forward(out.data(), gate.data(), upv.data(), N);
  auto dgate_in = up(be, gate), dup_in = up(be, upv), dg = up(be, g);
  BackendBuffer<float> dout(be, N);
  be->geglu_forward(dout.data(), dgate_in.data(), dup_in.data(), N);
  report("geglu_forward " + s, nmse(down(be, dout), out), kTolExact);
  auto ga = randn(r, N), gu = randn(r, N);
  auto ra = ga, ru = gu;
  geglu_backward(ra.data(), ru.data(), g.data(), gate.data(), upv.data(), N);
  auto dga = up(be, ga), dgu = up(be, gu);
  be->geglu_backward(dga.data(), dgu.data(), dg.data(), dgate_in.data(), dup_in.data(), N);
  report("geglu_backward dgate " + s, nmse(down(be, dga), ra), kTolExact);
  report("geglu_backward dup " + s, nmse(down(be, dgu), ru), kTolExact);
  auto ru2 = gu;
  geglu_backward((float*)nullptr, ru2.data(), g.data(), gate.data(), upv.data(), N);
  auto dgu2 = up(be, gu);
  be->geglu_backward(nullptr, dgu2.data(), dg.data(), dgate_in.data(), dup_in.data(), N);
  report("geglu_backward dup only " + s, nmse(down(be, dgu2), ru2), kTolExact);
}

// nn.Linear with strided rows (pad > 0: the rows are wider than the matrix; the padding must stay untouched)
void check_linear(const Backend* be, Rng& r, int N, int C, int OC, int pad, bool bias, double tol) {
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

// window > 0: sliding-window attention (Gemma's local layers)
void check_gqa_attention(const Backend* be, Rng& r, int B, int T, int NH, int NKV, int hd, double tol, int window) {
  const std::string s = "(B=" + std::to_string(B) + ",T=" + std::to_string(T) + ",NH=" + std::to_string(NH) +
                        ",NKV=" + std::to_string(NKV) + ",hd=" + std::to_string(hd) + ",window=" +
                        std::to_string(window) + ")";
  const int ld = (NH + 2 * NKV) * hd;
  auto qkv = randn(r, (size_t)B * T * ld);
  std::vector<float> out((size_t)B * T * NH * hd), att((size_t)B * NH * T * T);
  gqa_attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, hd, window);
  auto dqkv_in = up(be, qkv);
  BackendBuffer<float> dout(be, out.size()), datt(be, att.size());
  be->gqa_attention_forward(dout.data(), datt.data(), dqkv_in.data(), B, T, NH, NKV, hd, window);
  report("gqa_attention_forward out " + s, nmse(down(be, dout), out), tol);
  report("gqa_attention_forward att " + s, nmse(down(be, datt), att), tol);
  auto g = randn(r, out.size()), gq = randn(r, qkv.size());
  auto rq = gq;
  gqa_attention_backward(rq.data(), g.data(), qkv.data(), att.data(), B, T, NH, NKV, hd, window);
  auto dg = up(be, g), dgq = up(be, gq);
  BackendBuffer<float> scratch(be, att.size());
  be->gqa_attention_backward(dgq.data(), scratch.data(), dg.data(), dqkv_in.data(), datt.data(), B, T, NH, NKV, hd,
                             window);
  report("gqa_attention_backward dqkv " + s, nmse(down(be, dgq), rq), tol);
}

static void check_gqa_decode(const Backend* be, Rng& r, int R, int Tn, int NH, int NKV, int hd, int P, int len, int cap,
                             double tol, int window = 0) {
  const std::string s = "(R=" + std::to_string(R) + ",Tn=" + std::to_string(Tn) + ",NH=" + std::to_string(NH) +
                        ",NKV=" + std::to_string(NKV) + ",hd=" + std::to_string(hd) + ",P=" + std::to_string(P) +
                        ",len=" + std::to_string(len) + ",window=" + std::to_string(window) + ")";
  const int KV = NKV * hd;
  auto qkv = randn(r, (size_t)R * Tn * (NH + 2 * NKV) * hd);
  auto pk = randn(r, (size_t)std::max(P, 1) * KV), pv = randn(r, (size_t)std::max(P, 1) * KV);
  auto kc = randn(r, (size_t)R * cap * KV), vc = randn(r, (size_t)R * cap * KV);
  std::vector<float> out((size_t)R * Tn * NH * hd);
  auto dkc = up(be, kc), dvc = up(be, vc), dpk = up(be, pk), dpv = up(be, pv), dq = up(be, qkv);
  gqa_attention_decode_forward(out.data(), kc.data(), vc.data(), P ? pk.data() : nullptr, P ? pv.data() : nullptr,
                               qkv.data(), R, Tn, NH, NKV, hd, P, len, cap, window);
  BackendBuffer<float> dout(be, out.size());
  be->gqa_attention_decode_forward(dout.data(), dkc.data(), dvc.data(), P ? dpk.data() : nullptr,
                                   P ? dpv.data() : nullptr, dq.data(), R, Tn, NH, NKV, hd, P, len, cap, window);
  report("gqa_attention_decode_forward out " + s, nmse(down(be, dout), out), tol);
  report("gqa_attention_decode_forward k cache " + s, nmse(down(be, dkc), kc), kTolExact);
  report("gqa_attention_decode_forward v cache " + s, nmse(down(be, dvc), vc), kTolExact);
}

void run_llama_op_checks(const Backend* be, Rng& r, double gemm_tol_f32) {
  // multi-head attention (GPT-2's shapes: NKV = NH, hd = C / NH)
  check_gqa_attention(be, r, 1, 1, 1, 1, 4, gemm_tol_f32);
  check_gqa_attention(be, r, 2, 7, 3, 3, 8, gemm_tol_f32);
  check_gqa_attention(be, r, 3, 37, 4, 4, 16, gemm_tol_f32);
  check_gqa_attention(be, r, 1, 70, 2, 2, 24, gemm_tol_f32);
  check_gqa_decode(be, r, 1, 1, 1, 1, 4, 0, 0, 1, gemm_tol_f32);
  check_gqa_decode(be, r, 5, 1, 3, 3, 8, 9, 4, 11, gemm_tol_f32);
  check_gqa_decode(be, r, 3, 4, 4, 4, 16, 17, 0, 6, gemm_tol_f32);
  check_gqa_decode(be, r, 2, 2, 2, 2, 24, 0, 30, 40, gemm_tol_f32);
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
  // Gemma: the embedding scale, (1 + w) norms over whole rows and over the q and k heads of packed qkv rows, GeGLU,
  // sliding-window attention (window shorter, equal to and longer than the sequence), decoding in a window
  check_embedding_lookup(be, r, 3, 17, 64, 50, 8.f);
  check_rmsnorm(be, r, 13, 37, 1, 37, 1.f);
  check_rmsnorm(be, r, 9, 16, 4, (4 + 2 * 1) * 16, 1.f);       // the q heads of qkv rows (4 q heads, 1 kv head)
  check_rmsnorm(be, r, 70, 64, 2, (8 + 2 * 2) * 64, 1.f);      // the k heads of wider rows
  check_geglu(be, r, 1);
  check_geglu(be, r, 300007);
  check_gqa_attention(be, r, 2, 12, 4, 1, 16, gemm_tol_f32, 8);
  check_gqa_attention(be, r, 1, 37, 4, 2, 18, gemm_tol_f32, 5);
  check_gqa_attention(be, r, 2, 9, 2, 2, 8, gemm_tol_f32, 9);
  check_gqa_attention(be, r, 1, 70, 8, 2, 64, gemm_tol_f32, 1);
  check_gqa_decode(be, r, 5, 1, 6, 2, 10, 9, 4, 11, gemm_tol_f32, 8);
  check_gqa_decode(be, r, 3, 4, 4, 1, 18, 17, 0, 6, gemm_tol_f32, 5);
  check_gqa_decode(be, r, 2, 2, 8, 2, 64, 0, 30, 40, gemm_tol_f32, 3);
}

}  // namespace check
}  // namespace gradmm
