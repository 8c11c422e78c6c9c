// Standalone checks of the bf16 GEMM (binding/src/gemm_bf16.h), no Node: the f32 → bf16 rounding, the portable
// kernel bit for bit against an independent writing of the documented arithmetic, the AVX512_BF16 kernel bit for bit
// against the portable one (where the CPU has it), both against a double product of the bf16-rounded inputs, and the
// same bits for any thread count. Built a second time as gemm_bf16_tests_emulated where SIMDe is installed (the
// AVX512_BF16 kernel on SIMDe's emulation, whatever the CPU): there the SIMD kernel is held to a tolerance, since
// SIMDe's vdpbf16ps need not round as the instruction does. Prints "N passed, N failed".
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "gemm_bf16.h"
#include "threadpool.h"

using namespace gradmm;

#ifdef GRADMM_BF16_EMULATED
static const bool kEmulated = true;
#else
static const bool kEmulated = false;
#endif

static uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static void test_rounding() {
  int bad = 0;
  auto expect = [&](float f, uint16_t want) {
    if (f32_to_bf16(f) != want) {
      std::printf("  f32_to_bf16(%08x) = %04x, want %04x\n", bits(f), f32_to_bf16(f), want);
      ++bad;
    }
  };
  expect(1.0f, 0x3f80);
  expect(from_bits(0x3f808000u), 0x3f80);  // tie, even below: stays
  expect(from_bits(0x3f818000u), 0x3f82);  // tie, odd below: up to even
  expect(from_bits(0x3f808001u), 0x3f81);  // above the tie: up
  expect(from_bits(0x3f807fffu), 0x3f80);  // below the tie: down
  expect(-2.5f, 0xc020);
  expect(from_bits(0x7f7fffffu), 0x7f80);  // FLT_MAX rounds to +inf
  expect(INFINITY, 0x7f80);
  expect(-INFINITY, 0xff80);
  expect(from_bits(0x7f800001u), 0x7fc0);  // a signalling NaN becomes quiet, never inf
  expect(from_bits(0xffc12345u), 0xffc1);
  expect(0.f, 0x0000);
  expect(-0.f, 0x8000);
  expect(from_bits(0x00018000u), 0x0002);  // denormal tie, odd below: up
  // every bf16 value converts to itself
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32((uint16_t)h);
    if (!std::isnan(f) && f32_to_bf16(f) != h) ++bad;
  }
  report("f32_to_bf16 round to nearest even (ties, inf, NaN, denormals, identity on bf16)", bad, 0);
}

// The documented arithmetic written independently of the kernels: per element, K in blocks of 256, pairs (k, k+1)
// added k+1 first by fused multiply-adds, DAZ/FTZ, a block's sum written to or added to C.
static float daz(uint16_t h) { return (h & 0x7f80u) ? bf16_to_f32(h) : bf16_to_f32(h & 0x8000u); }
static float ftz(float x) { return std::fabs(x) < FLT_MIN ? std::copysign(0.f, x) : x; }
static void reference(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                      float* C, int ldc, bool accumulate) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float c = accumulate ? C[(long)i * ldc + j] : 0.f;
      for (int p0 = 0; p0 < K; p0 += 256) {
        const int kc = std::min(256, K - p0);
        float s = 0;
        for (int k = 0; k < kc; k += 2) {
          auto a = [&](int kk) { return kk < kc ? f32_to_bf16(ta ? A[(long)(p0 + kk) * lda + i] : A[(long)i * lda + p0 + kk]) : (uint16_t)0; };
          auto b = [&](int kk) { return kk < kc ? (tb ? B[(long)j * ldb + p0 + kk] : B[(long)(p0 + kk) * ldb + j]) : (uint16_t)0; };
          s = ftz(std::fma(daz(a(k + 1)), daz(b(k + 1)), s));
          s = ftz(std::fma(daz(a(k)), daz(b(k)), s));
        }
        c = (p0 == 0 && !accumulate) ? s : c + s;
      }
      C[(long)i * ldc + j] = c;
    }
}

static bool same_bits(const std::vector<float>& a, const std::vector<float>& b, size_t* where = nullptr) {
  for (size_t i = 0; i < a.size(); ++i)
    if (bits(a[i]) != bits(b[i])) {
      if (where) *where = i;
      return false;
    }
  return true;
}

static void test_kernels() {
  Rng rng(7);
  const int shapes[][3] = {{1, 1, 1},    {1, 1, 2},     {7, 13, 5},    {12, 32, 256},  {13, 33, 257}, {37, 300, 513},
                           {130, 45, 70}, {3, 1000, 17}, {10, 197, 300}, {16, 64, 33}, {25, 70, 1100}};
  const bool have = gemm_bf16_force_kernel("avx512bf16");
  std::printf("avx512bf16 kernel: %s\n", have ? (kEmulated ? "emulated (SIMDe)" : "yes") : "not on this CPU");
  std::printf("amx-bf16 kernel: %s\n", gemm_bf16_force_kernel("amx-bf16") ? "yes" : "not here");
  for (auto& s : shapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int acc = 0; acc < 2; ++acc) {
          const int M = s[0], N = s[1], K = s[2];
          const std::string name = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                                   (ta ? " At" : "") + (tb ? " Bt" : "") + (acc ? " +=" : "");
          auto A = to_f(randn(rng, (size_t)M * K));
          auto Bf = to_f(randn(rng, (size_t)K * N));
          auto C0 = to_f(randn(rng, (size_t)M * N));
          std::vector<uint16_t> Bh(Bf.size());
          f32_to_bf16_n(Bh.data(), Bf.data(), (long)Bf.size());
          const int lda = ta ? M : K, ldb = tb ? K : N;
          std::vector<float> ref = C0;
          reference(ta, tb, M, N, K, A.data(), lda, Bh.data(), ldb, ref.data(), N, acc);
          // the double product of the bf16-rounded operands: what the arithmetic approximates
          std::vector<double> exact((size_t)M * N);
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
              double d = acc ? C0[(size_t)i * N + j] : 0.0;
              for (int k = 0; k < K; ++k)
                d += (double)bf16_to_f32(f32_to_bf16(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k])) *
                     (double)bf16_to_f32(tb ? Bh[(size_t)j * ldb + k] : Bh[(size_t)k * ldb + j]);
              exact[(size_t)i * N + j] = d;
            }
          const bool show = M * N * K >= 100000 || M * N * K < 100 || (ta && tb && acc);
          gemm_bf16_force_kernel("scalar");
          std::vector<float> sc = C0;
          gemm_bf16(ta, tb, M, N, K, A.data(), lda, Bh.data(), ldb, sc.data(), N, acc);
          size_t at = 0;
          if (!same_bits(sc, ref, &at) || show)
            report("gemm_bf16 scalar = reference bits " + name, same_bits(sc, ref) ? 0 : 1, 0);
          if (rel_err(sc, exact) > 2e-6 || show) report("gemm_bf16 scalar vs double " + name, rel_err(sc, exact), 2e-6);
          // the weights packed once: the same bits as packing per product
          {
            std::vector<float> Bq(Bf.size());  // op(B) as the kernels see it: B's bf16 values
            for (size_t i = 0; i < Bq.size(); ++i) Bq[i] = bf16_to_f32(Bh[i]);
            const size_t n = gemm_bf16_packed_size(K, N);
            uint32_t* Bp = static_cast<uint32_t*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64));
            gemm_bf16_pack(tb, Bq.data(), ldb, K, N, Bp);
            std::vector<float> pk = C0;
            gemm_bf16_packed(ta, M, N, K, A.data(), lda, Bp, pk.data(), N, acc);
            if (!same_bits(pk, ref) || show) report("gemm_bf16_packed scalar = reference bits " + name, same_bits(pk, ref) ? 0 : 1, 0);
            if (have) {
              gemm_bf16_force_kernel("avx512bf16");
              pk = C0;
              gemm_bf16_packed(ta, M, N, K, A.data(), lda, Bp, pk.data(), N, acc);
              const bool ok = kEmulated ? rel_err(pk, ref) <= 2e-6 : same_bits(pk, ref);
              if (!ok || show) report(std::string("gemm_bf16_packed avx512bf16 ") + (kEmulated ? "(emulated) ~ " : "= ") + "reference " + name, ok ? 0 : 1, 0);
              gemm_bf16_force_kernel("scalar");
            }
            std::free(Bp);
          }
          // AMX: the same products, added in the tile instruction's order: within rounding of the reference
          if (gemm_bf16_force_kernel("amx-bf16")) {
            std::vector<float> mx = C0;
            gemm_bf16(ta, tb, M, N, K, A.data(), lda, Bh.data(), ldb, mx.data(), N, acc);
            const double e = std::max(rel_err(mx, exact), rel_err(mx, ref) / 2);
            if (e > 2e-6 || show) report("gemm_bf16 amx-bf16 ~ reference and double " + name, e, 2e-6);
            gemm_bf16_force_kernel("scalar");
          }
          if (!have) continue;
          gemm_bf16_force_kernel("avx512bf16");
          std::vector<float> vx = C0;
          gemm_bf16(ta, tb, M, N, K, A.data(), lda, Bh.data(), ldb, vx.data(), N, acc);
          if (kEmulated) {
            if (rel_err(vx, ref) > 2e-6 || show) report("gemm_bf16 avx512bf16 (emulated) vs reference " + name, rel_err(vx, ref), 2e-6);
          } else if (!same_bits(vx, ref) || show) {
            report("gemm_bf16 avx512bf16 = scalar bits " + name, same_bits(vx, ref) ? 0 : 1, 0);
          }
        }
  // denormals and tiny products: flushed as the instruction does (bit-exact only on the real instruction)
  {
    const int M = 12, N = 32, K = 8;
    std::vector<float> A((size_t)M * K), Bf((size_t)K * N);
    for (size_t i = 0; i < A.size(); ++i) A[i] = (i % 3 == 0) ? from_bits(0x00400000u + (uint32_t)i) : (i % 3 == 1 ? 1e-20f : 1.5f);
    for (size_t i = 0; i < Bf.size(); ++i) Bf[i] = (i % 2 == 0) ? 1e-19f : from_bits(0x80300000u);
    std::vector<uint16_t> Bh(Bf.size());
    f32_to_bf16_n(Bh.data(), Bf.data(), (long)Bf.size());
    std::vector<float> ref((size_t)M * N), sc(ref.size()), vx(ref.size());
    reference(false, false, M, N, K, A.data(), K, Bh.data(), N, ref.data(), N, false);
    gemm_bf16_force_kernel("scalar");
    gemm_bf16(false, false, M, N, K, A.data(), K, Bh.data(), N, sc.data(), N, false);
    report("gemm_bf16 scalar = reference bits (denormal inputs, underflowing products)", same_bits(sc, ref) ? 0 : 1, 0);
    if (have && !kEmulated) {
      gemm_bf16_force_kernel("avx512bf16");
      gemm_bf16(false, false, M, N, K, A.data(), K, Bh.data(), N, vx.data(), N, false);
      report("gemm_bf16 avx512bf16 = scalar bits (denormal inputs, underflowing products)", same_bits(vx, ref) ? 0 : 1, 0);
    }
  }
  gemm_bf16_force_kernel("auto");
}

static void test_threads() {
  Rng rng(3);
  const int M = 200, N = 600, K = 700;
  auto A = to_f(randn(rng, (size_t)M * K));
  auto Bf = to_f(randn(rng, (size_t)N * K));
  std::vector<uint16_t> Bh(Bf.size());
  f32_to_bf16_n(Bh.data(), Bf.data(), (long)Bf.size());
  const int before = get_num_threads();
  std::vector<float> one((size_t)M * N), many((size_t)M * N), tall((size_t)N * M);
  set_num_threads(1);
  gemm_bf16(false, true, M, N, K, A.data(), K, Bh.data(), K, one.data(), N, false);
  set_num_threads(4);
  gemm_bf16(false, true, M, N, K, A.data(), K, Bh.data(), K, many.data(), N, false);
  set_num_threads(before);
  report(std::string("gemm_bf16 ") + gemm_bf16_kernel_name() + " bit-identical for 1 and 4 threads",
         same_bits(one, many) ? 0 : 1, 0);
}

int main() {
  std::printf("bf16 kernel: %s, threads: %d\n", gemm_bf16_kernel_name(), get_num_threads());
  test_rounding();
  test_kernels();
  test_threads();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
