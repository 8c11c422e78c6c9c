// Compiled with -mavx2 -mfma; only called after CPUID says the CPU has both.
// Generated shape (one line per accumulator row) kept explicit on purpose: see the comment in the kernel.
#include <immintrin.h>

#include "gemm.h"

namespace gradmm {
namespace {
#include "gemm_tile.inc"

// 6 rows × 16 columns: 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
constexpr int MR = 6, NR = 16;

// clang-format off
void micro_avx2(int kc, const float* a, const float* b, float* c, long ldc, int m, int n, bool accumulate) {
  // Accumulators as named locals (not an array) so the compiler keeps all of them in registers.
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    { const __m256 ai = _mm256_set1_ps(a[0]); c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01); }
    { const __m256 ai = _mm256_set1_ps(a[1]); c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11); }
    { const __m256 ai = _mm256_set1_ps(a[2]); c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21); }
    { const __m256 ai = _mm256_set1_ps(a[3]); c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31); }
    { const __m256 ai = _mm256_set1_ps(a[4]); c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41); }
    { const __m256 ai = _mm256_set1_ps(a[5]); c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51); }
  }
  if (m == MR && n == NR) {
    if (accumulate) {
      _mm256_storeu_ps(c + 0 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 0 * ldc), c00)); _mm256_storeu_ps(c + 0 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 0 * ldc + 8), c01));
      _mm256_storeu_ps(c + 1 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 1 * ldc), c10)); _mm256_storeu_ps(c + 1 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 1 * ldc + 8), c11));
      _mm256_storeu_ps(c + 2 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc), c20)); _mm256_storeu_ps(c + 2 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc + 8), c21));
      _mm256_storeu_ps(c + 3 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc), c30)); _mm256_storeu_ps(c + 3 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc + 8), c31));
      _mm256_storeu_ps(c + 4 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc), c40)); _mm256_storeu_ps(c + 4 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc + 8), c41));
      _mm256_storeu_ps(c + 5 * ldc, _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc), c50)); _mm256_storeu_ps(c + 5 * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc + 8), c51));
    } else {
      _mm256_storeu_ps(c + 0 * ldc, c00); _mm256_storeu_ps(c + 0 * ldc + 8, c01);
      _mm256_storeu_ps(c + 1 * ldc, c10); _mm256_storeu_ps(c + 1 * ldc + 8, c11);
      _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
      _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
      _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41);
      _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51);
    }
    return;
  }
  alignas(32) float tile[MR * NR];
  _mm256_store_ps(tile + 0 * NR, c00); _mm256_store_ps(tile + 0 * NR + 8, c01);
  _mm256_store_ps(tile + 1 * NR, c10); _mm256_store_ps(tile + 1 * NR + 8, c11);
  _mm256_store_ps(tile + 2 * NR, c20); _mm256_store_ps(tile + 2 * NR + 8, c21);
  _mm256_store_ps(tile + 3 * NR, c30); _mm256_store_ps(tile + 3 * NR + 8, c31);
  _mm256_store_ps(tile + 4 * NR, c40); _mm256_store_ps(tile + 4 * NR + 8, c41);
  _mm256_store_ps(tile + 5 * NR, c50); _mm256_store_ps(tile + 5 * NR + 8, c51);
  store_partial_tile(tile, NR, c, ldc, m, n, accumulate);
}
// clang-format on

const GemmMicroKernel kernel = {"avx2", MR, NR, micro_avx2};
}  // namespace

const GemmMicroKernel* gemm_kernel_avx2() { return &kernel; }
}  // namespace gradmm
