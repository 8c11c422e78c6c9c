#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "threadpool.h"

namespace gradmm {
namespace {

constexpr int KC = 256;   // depth of one packed block: an A row panel (mr×KC) stays in L1 during a micro-kernel
constexpr int MC_ROWS = 96;  // rows of A packed at once (rounded to the kernel's mr): lives in L2
constexpr int NC = 2048;  // columns of B packed at once: lives in L2/L3
constexpr int kSmallM = 16;  // at most this many rows of A: the unpacked path (packing B would dominate)

// Tests only (binding/tests/gemm_emulated.cpp): the AVX-512 kernel runs on SIMDe's emulation, whatever the CPU.
#ifdef GRADMM_AVX512_EMULATED
bool cpu_has_avx512f() { return true; }
#else
bool cpu_has_avx512f() { return __builtin_cpu_supports("avx512f"); }
#endif

const GemmMicroKernel* detect_best_kernel() {
  __builtin_cpu_init();
  if (cpu_has_avx512f() && gemm_kernel_avx512()) return gemm_kernel_avx512();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && gemm_kernel_avx2()) return gemm_kernel_avx2();
  return gemm_kernel_scalar();
}

const GemmMicroKernel*& active_kernel() {
  static const GemmMicroKernel* k = detect_best_kernel();
  return k;
}

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread packing buffer, grown on demand and kept for the thread's lifetime.
float* scratch(std::unique_ptr<float, AlignedFree>& buf, size_t& cap, size_t floats) {
  if (floats > cap) {
    size_t bytes = ((floats * sizeof(float) + 63) / 64) * 64;
    buf.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    cap = floats;
  }
  return buf.get();
}

// C[m0:m1, n0:n1] (+)= op(A)[m0:m1, :] · op(B)[:, n0:n1] with the BLIS loop nest.
void gemm_block(const GemmMicroKernel& kern, bool transA, bool transB, int m0, int m1, int n0, int n1, int K,
                const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
  thread_local std::unique_ptr<float, AlignedFree> a_buf, b_buf;
  thread_local size_t a_cap = 0, b_cap = 0;
  const int mr = kern.mr, nr = kern.nr;
  const int mc_max = std::max(mr, (MC_ROWS / mr) * mr);
  const int nc_max = (NC / nr) * nr;
  float* a_pack = scratch(a_buf, a_cap, (size_t)mc_max * KC);
  float* b_pack = scratch(b_buf, b_cap, (size_t)nc_max * KC);
  for (int jc = n0; jc < n1; jc += nc_max) {
    int nc = std::min(nc_max, n1 - jc);
    for (int pc = 0; pc < K; pc += KC) {
      int kc = std::min(KC, K - pc);
      bool acc = accumulate || pc > 0;
      kern.pack_b(transB, B, ldb, pc, kc, jc, nc, b_pack);
      for (int ic = m0; ic < m1; ic += mc_max) {
        int mc = std::min(mc_max, m1 - ic);
        kern.pack_a(transA, A, lda, ic, mc, pc, kc, a_pack);
        for (int jr = 0; jr < nc; jr += nr)
          for (int ir = 0; ir < mc; ir += mr)
            kern.run(kc, a_pack + (long)ir * kc, b_pack + (long)jr * kc, C + (long)(ic + ir) * ldc + jc + jr, ldc,
                     std::min(mr, mc - ir), std::min(nr, nc - jr), acc);
      }
    }
  }
}

}  // namespace

const char* sgemm_kernel_name() { return active_kernel()->name; }

bool sgemm_force_kernel(const char* name) {
  const GemmMicroKernel* k = nullptr;
  if (!std::strcmp(name, "auto")) k = detect_best_kernel();
  else if (!std::strcmp(name, "scalar")) k = gemm_kernel_scalar();
  else if (!std::strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k = gemm_kernel_avx2();
  else if (!std::strcmp(name, "avx512") && cpu_has_avx512f()) k = gemm_kernel_avx512();
  if (!k) return false;
  active_kernel() = k;
  return true;
}

void sgemm(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
           int ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; ++i) std::memset(C + (long)i * ldc, 0, sizeof(float) * N);
    return;
  }
  const GemmMicroKernel& kern = *active_kernel();
  if (M <= kSmallM && !transA) {  // decoding-sized products: no packing, columns split across threads
    auto small = transB ? kern.small_nt : kern.small_nn;
    const long blocks = (N + 63) / 64;
    auto cols = [&](long b0, long b1) {
      small(M, (int)(b0 * 64), (int)std::min<long>(b1 * 64, N), K, A, lda, B, ldb, C, ldc, accumulate);
    };
    if (2.0 * M * N * K < 2e5) cols(0, blocks);
    else parallel_for(blocks, cols);
    return;
  }
  // Split the larger of M and N across threads, in whole register tiles; tiny products stay on one thread.
  const bool split_cols = N >= M;
  const int unit = split_cols ? kern.nr : kern.mr;
  const long units = ((split_cols ? N : M) + unit - 1) / unit;
  const double flops = 2.0 * M * N * K;
  auto run_range = [&](long u0, long u1) {
    int lo = (int)(u0 * unit), hi = (int)std::min<long>(u1 * unit, split_cols ? N : M);
    if (split_cols) gemm_block(kern, transA, transB, 0, M, lo, hi, K, A, lda, B, ldb, C, ldc, accumulate);
    else gemm_block(kern, transA, transB, lo, hi, 0, N, K, A, lda, B, ldb, C, ldc, accumulate);
  };
  if (flops < 2e5 || units < 2) run_range(0, units);
  else parallel_for(units, run_range);
}

}  // namespace gradmm
