// The bf16 GEMM's driver (gemm_bf16.h): the loop nest of gemm.cpp (BLIS order, packed panels, K in blocks of KC),
// the kernel chosen at run time, the f32 → bf16 conversion.
#include "gemm_bf16.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "threadpool.h"

namespace gradmm {
#if defined(GRADMM_BF16_EMULATED)
const GemmBf16Kernel* gemm_bf16_kernel_amx() { return nullptr; }  // the emulated test build has no AMX kernel
bool amx_bf16_usable() { return false; }
#endif
namespace {

constexpr int KC = 256;      // even: every block but the last is whole pairs (the pairing is the same in every kernel)
constexpr int MC_ROWS = 96;  // rows of A packed at once (rounded to the kernel's mr)
constexpr int NC = 2048;     // columns of B packed at once
constexpr int PANEL = 32;    // every kernel's nr: the panel width of weights packed once (gemm_bf16_pack)

bool detect_avx512bf16() {
#if defined(GRADMM_BF16_EMULATED)
  return true;  // tests only: the kernel runs on SIMDe's emulation (binding/tests/gemm_bf16_emulated.cpp)
#elif defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // AVX-512F/BW/VL (which also says the OS saves the zmm state) and CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512vl"))
    return false;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 5) & 1u;
#else
  return false;
#endif
}

bool amx_ok() {
#if defined(GRADMM_BF16_EMULATED)
  return false;
#else
  return gemm_bf16_kernel_amx() && amx_bf16_usable();
#endif
}

const GemmBf16Kernel* detect_best() {
  if (std::getenv("GRADMM_NO_AMX") == nullptr && amx_ok()) return gemm_bf16_kernel_amx();
  if (cpu_has_avx512bf16()) return gemm_bf16_kernel_avx512();
  return gemm_bf16_kernel_scalar();
}

const GemmBf16Kernel*& active() {
  static const GemmBf16Kernel* k = detect_best();
  return k;
}

struct AlignedFree {
  void operator()(uint32_t* p) const { std::free(p); }
};
uint32_t* scratch(std::unique_ptr<uint32_t, AlignedFree>& buf, size_t& cap, size_t n) {
  if (n > cap) {
    const size_t bytes = ((n * sizeof(uint32_t) + 63) / 64) * 64;
    buf.reset(static_cast<uint32_t*>(std::aligned_alloc(64, bytes)));
    cap = n;
  }
  return buf.get();
}

// Bp: op(B) packed whole (gemm_bf16_pack), or nullptr: B packed here block by block.
void block_bf16(const GemmBf16Kernel& kern, bool transA, bool transB, int m0, int m1, int n0, int n1, int K,
                const float* A, int lda, const uint16_t* B, int ldb, const uint32_t* Bp, int N, float* C, int ldc,
                bool accumulate) {
  thread_local std::unique_ptr<uint32_t, AlignedFree> a_buf, b_buf;
  thread_local size_t a_cap = 0, b_cap = 0;
  const int mr = kern.mr, nr = kern.nr;
  const int mc_max = std::max(mr, (MC_ROWS / mr) * mr);
  const int nc_max = (NC / nr) * nr;
  uint32_t* a_pack = scratch(a_buf, a_cap, (size_t)mc_max * (KC / 2));
  uint32_t* b_pack = Bp ? nullptr : scratch(b_buf, b_cap, (size_t)nc_max * (KC / 2));
  const long n_pad = (N + PANEL - 1) / PANEL * PANEL;
  for (int jc = n0; jc < n1; jc += nc_max) {
    const int nc = std::min(nc_max, n1 - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc), kp = (kc + 1) / 2;
      const bool acc = accumulate || pc > 0;
      if (Bp) b_pack = const_cast<uint32_t*>(Bp) + (long)pc / 2 * n_pad + (long)jc * kp;  // block pc, column jc
      else kern.pack_b(transB, B, ldb, pc, kc, jc, nc, b_pack);
      for (int ic = m0; ic < m1; ic += mc_max) {
        const int mc = std::min(mc_max, m1 - ic);
        kern.pack_a(transA, A, lda, ic, mc, pc, kc, a_pack);
        for (int jr = 0; jr < nc; jr += nr)
          for (int ir = 0; ir < mc; ir += mr)
            kern.run(kp, a_pack + (long)ir * kp, b_pack + (long)jr * kp, C + (long)(ic + ir) * ldc + jc + jr, ldc,
                     std::min(mr, mc - ir), std::min(nr, nc - jr), acc);
      }
    }
  }
}

}  // namespace

bool cpu_has_avx512bf16() {
  static const bool has = detect_avx512bf16() && gemm_bf16_kernel_avx512() != nullptr;
  return has;
}

const char* gemm_bf16_kernel_name() { return active()->name; }

bool gemm_bf16_force_kernel(const char* name) {
  const GemmBf16Kernel* k = nullptr;
  if (!std::strcmp(name, "auto")) k = detect_best();
  else if (!std::strcmp(name, "scalar") || !std::strcmp(name, "bf16-scalar")) k = gemm_bf16_kernel_scalar();
  else if (!std::strcmp(name, "avx512bf16") && cpu_has_avx512bf16()) k = gemm_bf16_kernel_avx512();
  else if ((!std::strcmp(name, "amx-bf16") || !std::strcmp(name, "amx")) && amx_ok()) k = gemm_bf16_kernel_amx();
  if (!k) return false;
  active() = k;
  return true;
}

void f32_to_bf16_n(uint16_t* dst, const float* src, long n) {
  auto run = [&](long i0, long i1) {
    for (long i = i0; i < i1; ++i) dst[i] = f32_to_bf16(src[i]);
  };
  if (n < (1 << 16)) run(0, n);
  else parallel_for(n, run);
}

namespace {
void gemm_bf16_impl(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                    const uint32_t* Bp, float* C, int ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; ++i) std::memset(C + (long)i * ldc, 0, sizeof(float) * N);
    return;
  }
  const GemmBf16Kernel& kern = *active();
  const bool split_cols = N >= M;
  const int unit = split_cols ? kern.nr : kern.mr;
  const long units = ((split_cols ? N : M) + unit - 1) / unit;
  const double flops = 2.0 * M * N * K;
  auto run_range = [&](long u0, long u1) {
    const int lo = (int)(u0 * unit), hi = (int)std::min<long>(u1 * unit, split_cols ? N : M);
    if (split_cols) block_bf16(kern, transA, transB, 0, M, lo, hi, K, A, lda, B, ldb, Bp, N, C, ldc, accumulate);
    else block_bf16(kern, transA, transB, lo, hi, 0, N, K, A, lda, B, ldb, Bp, N, C, ldc, accumulate);
  };
  if (flops < 2e5 || units < 2) run_range(0, units);
  else parallel_for(units, run_range);
}
}  // namespace

void gemm_bf16(bool transA, bool transB, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
               float* C, int ldc, bool accumulate) {
  gemm_bf16_impl(transA, transB, M, N, K, A, lda, B, ldb, nullptr, C, ldc, accumulate);
}

void gemm_bf16_packed(bool transA, int M, int N, int K, const float* A, int lda, const uint32_t* Bp, float* C,
                      int ldc, bool accumulate) {
  gemm_bf16_impl(transA, false, M, N, K, A, lda, nullptr, 0, Bp, C, ldc, accumulate);
}

size_t gemm_bf16_packed_size(int K, int N) {
  const size_t n_pad = (size_t)(N + PANEL - 1) / PANEL * PANEL;
  return n_pad * (size_t)((K + 1) / 2);  // KC is even: the pairs of all blocks add up to ⌈K/2⌉
}

// The layout of block_bf16 with Bp: block pc (whole pairs but the last) at pc/2 · n_pad, in it the panel of columns
// [j, j+32) at j · kp, kp groups of 32 pairs: exactly what pack_b_bf16<32> writes for all N columns from 0.
void gemm_bf16_pack(bool transB, const float* B, int ldb, int K, int N, uint32_t* dst) {
  const long n_pad = (N + PANEL - 1) / PANEL * PANEL;
  const long panels = n_pad / PANEL;
  for (int pc = 0; pc < K; pc += KC) {
    const int kc = std::min(KC, K - pc), kp = (kc + 1) / 2;
    uint32_t* block = dst + (long)pc / 2 * n_pad;
    parallel_for(panels, [&](long p0, long p1) {
      for (long p = p0; p < p1; ++p) {
        const int j0 = (int)(p * PANEL), cols = std::min(PANEL, N - j0);
        uint32_t* d = block + (long)j0 * kp;
        auto at = [&](int k, int j) { return f32_to_bf16(transB ? B[(long)j * ldb + k] : B[(long)k * ldb + j]); };
        auto put = [&](int q, int j) {
          const int k = pc + 2 * q;
          const uint16_t lo = at(k, j0 + j), hi = 2 * q + 1 < kc ? at(k + 1, j0 + j) : (uint16_t)0;
          d[(long)q * PANEL + j] = (uint32_t)lo | ((uint32_t)hi << 16);
        };
        if (transB) {  // read along rows of the storage
          for (int j = 0; j < cols; ++j)
            for (int q = 0; q < kp; ++q) put(q, j);
        } else {
          for (int q = 0; q < kp; ++q)
            for (int j = 0; j < cols; ++j) put(q, j);
        }
        for (int q = 0; q < kp; ++q)
          for (int j = cols; j < PANEL; ++j) d[(long)q * PANEL + j] = 0;
      }
    });
  }
}

}  // namespace gradmm
