// The bf16 kernel on AVX512_BF16 (vdpbf16ps): compiled with -mavx512f -mavx512bf16 (+bw/vl/dq); only called after
// CPUID says the CPU has AVX512_BF16 (gemm_bf16.cpp). Same arithmetic as gemm_bf16_scalar.cpp, bit for bit
// (gemm_bf16.h). Where the compiler cannot target AVX512_BF16, GRADMM_NO_AVX512BF16 leaves it out.
// GRADMM_BF16_EMULATED (binding/tests/gemm_bf16_emulated.cpp): the same source on SIMDe's portable AVX-512, so the
// kernel's logic is tested on machines without AVX512_BF16 (built where libsimde-dev is installed).
#include "gemm_bf16.h"

#if defined(GRADMM_NO_AVX512BF16)
namespace gradmm {
const GemmBf16Kernel* gemm_bf16_kernel_avx512() { return nullptr; }
}  // namespace gradmm
#else

#ifdef GRADMM_BF16_EMULATED
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define GRADMM_M512BH simde__m512bh
#else
#include <immintrin.h>
#define GRADMM_M512BH __m512bh
#endif

namespace gradmm {
namespace {
#include "gemm_bf16_tile.inc"

// 12 rows × 32 columns: 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers (as the f32 kernel).
constexpr int MR = 12, NR = 32;

inline GRADMM_M512BH as_bh(__m512i v) {
  GRADMM_M512BH r;
  std::memcpy(&r, &v, sizeof r);
  return r;
}

// clang-format off
#define GRADMM_ROW(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
#define GRADMM_STEP(i) { const GRADMM_M512BH ai = as_bh(_mm512_set1_epi32((int)a[i])); \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, ai, b0); c##i##1 = _mm512_dpbf16_ps(c##i##1, ai, b1); }
#define GRADMM_STORE(i) { float* ci = c + (long)(i) * ldc; \
    if (accumulate) { _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0)); \
                      _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1)); } \
    else { _mm512_storeu_ps(ci, c##i##0); _mm512_storeu_ps(ci + 16, c##i##1); } }
#define GRADMM_TILE(i) _mm512_store_ps(tile + (i) * NR, c##i##0); _mm512_store_ps(tile + (i) * NR + 16, c##i##1);

void micro_avx512bf16(int kp, const uint32_t* a, const uint32_t* b, float* c, long ldc, int m, int n, bool accumulate) {
  // Accumulators as named locals (not an array) so the compiler keeps all of them in registers.
  GRADMM_ROW(0) GRADMM_ROW(1) GRADMM_ROW(2) GRADMM_ROW(3) GRADMM_ROW(4) GRADMM_ROW(5)
  GRADMM_ROW(6) GRADMM_ROW(7) GRADMM_ROW(8) GRADMM_ROW(9) GRADMM_ROW(10) GRADMM_ROW(11)
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int q = 0; q < kp; ++q, a += MR, b += NR) {
    const GRADMM_M512BH b0 = as_bh(_mm512_load_si512(reinterpret_cast<const void*>(b)));
    const GRADMM_M512BH b1 = as_bh(_mm512_load_si512(reinterpret_cast<const void*>(b + 16)));
    GRADMM_STEP(0) GRADMM_STEP(1) GRADMM_STEP(2) GRADMM_STEP(3) GRADMM_STEP(4) GRADMM_STEP(5)
    GRADMM_STEP(6) GRADMM_STEP(7) GRADMM_STEP(8) GRADMM_STEP(9) GRADMM_STEP(10) GRADMM_STEP(11)
  }
  if (m == MR && n == NR) {
    GRADMM_STORE(0) GRADMM_STORE(1) GRADMM_STORE(2) GRADMM_STORE(3) GRADMM_STORE(4) GRADMM_STORE(5)
    GRADMM_STORE(6) GRADMM_STORE(7) GRADMM_STORE(8) GRADMM_STORE(9) GRADMM_STORE(10) GRADMM_STORE(11)
    return;
  }
  alignas(64) float tile[MR * NR];
  GRADMM_TILE(0) GRADMM_TILE(1) GRADMM_TILE(2) GRADMM_TILE(3) GRADMM_TILE(4) GRADMM_TILE(5)
  GRADMM_TILE(6) GRADMM_TILE(7) GRADMM_TILE(8) GRADMM_TILE(9) GRADMM_TILE(10) GRADMM_TILE(11)
  store_partial_tile_bf16(tile, NR, c, ldc, m, n, accumulate);
}
#undef GRADMM_ROW
#undef GRADMM_STEP
#undef GRADMM_STORE
#undef GRADMM_TILE
// clang-format on

const GemmBf16Kernel kernel = {"avx512bf16", MR, NR, micro_avx512bf16, pack_a_bf16<MR>, pack_b_bf16<NR>};
}  // namespace

const GemmBf16Kernel* gemm_bf16_kernel_avx512() { return &kernel; }
}  // namespace gradmm
#endif
