// Compiled with -mavx2 -mfma; only called after CPUID says the CPU has both.
// Generated shape (one line per accumulator row) kept explicit on purpose: see the comment in the kernel.
#include <immintrin.h>

#include <type_traits>
#include <vector>

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
  // The C tile is needed only after the k loop: start fetching its lines now so the stores do not wait on misses.
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
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

// Small-M products (drivers in gemm_tile.inc). nn tile: R ≤ 6 rows × 16 columns (up to 12 accumulators, the packed
// kernel's shape), so a strip of B is read once per 6 rows of A.
struct SmallNNTile {
  static constexpr int W = 16;
  template <int R>
  static void run(int kn, const float* A, int lda, const float* B, int ldb, float* P, int ldp, bool first) {
    __m256 c0[R], c1[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      c0[r] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(P + (long)r * ldp);
      c1[r] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(P + (long)r * ldp + 8);
    }
    for (int k = 0; k < kn; ++k) {
      const float* b = B + (long)k * ldb;
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 a = _mm256_broadcast_ss(A + (long)r * lda + k);
        c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
        c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(P + (long)r * ldp, c0[r]);
      _mm256_storeu_ps(P + (long)r * ldp + 8, c1[r]);
    }
  }
};

// nt tile: R ≤ 6 rows × NC ≤ 2 columns (12 accumulators: 8 loads per 12 FMAs, where one column × 4 rows needed 5
// per 4). Per element the arithmetic is fixed: 8 lanes accumulated by FMA over k, summed lane 0 to 7, then the k
// tail one product at a time.
struct SmallNTTile {
  template <int R, int NC>
  static void run(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
    const int K8 = K / 8 * 8;
    __m256 acc[R][NC];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int q = 0; q < NC; ++q) acc[r][q] = _mm256_setzero_ps();
    for (int k = 0; k < K8; k += 8) {
      __m256 bv[NC];
#pragma GCC unroll 2
      for (int q = 0; q < NC; ++q) bv[q] = _mm256_loadu_ps(B + (long)q * ldb + k);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m256 av = _mm256_loadu_ps(A + (long)r * lda + k);
#pragma GCC unroll 2
        for (int q = 0; q < NC; ++q) acc[r][q] = _mm256_fmadd_ps(av, bv[q], acc[r][q]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NC; ++q) {
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, acc[r][q]);
        float s = 0;
        for (int l = 0; l < 8; ++l) s += lanes[l];
        const float* a = A + (long)r * lda;
        const float* b = B + (long)q * ldb;
        for (int k = K8; k < K; ++k) s += a[k] * b[k];
        float* cp = C + (long)r * ldc + q;
        *cp = accumulate ? *cp + s : s;
      }
  }
};

const GemmMicroKernel kernel = {"avx2", MR, NR, micro_avx2, pack_a_transposing<MR>, pack_b_transposing<NR>, small_nn_blocked<SmallNNTile>,
                                small_nt_pairs<SmallNTTile>};
}  // namespace

const GemmMicroKernel* gemm_kernel_avx2() { return &kernel; }
}  // namespace gradmm
