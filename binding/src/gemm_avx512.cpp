// Compiled with -mavx512f (+vl/bw/dq); only called after CPUID says the CPU has AVX-512F.
// Generated shape (one line per accumulator row) kept explicit on purpose: see the comment in the kernel.
// GRADMM_AVX512_EMULATED (binding/tests/gemm_avx512_emulated.cpp): the same source on SIMDe's portable AVX-512, so
// the kernel's logic is tested on machines without AVX-512 (built where libsimde-dev is installed).
#ifdef GRADMM_AVX512_EMULATED
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

#include <type_traits>
#include <vector>

#include "gemm.h"

namespace gradmm {
namespace {
#include "gemm_tile.inc"

// 12 rows × 32 columns: 24 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers.
constexpr int MR = 12, NR = 32;

// clang-format off
void micro_avx512(int kc, const float* a, const float* b, float* c, long ldc, int m, int n, bool accumulate) {
  // Accumulators as named locals (not an array) so the compiler keeps all of them in registers.
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
  __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
  __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
  __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
  __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps();
  __m512 c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
  __m512 c100 = _mm512_setzero_ps(), c101 = _mm512_setzero_ps();
  __m512 c110 = _mm512_setzero_ps(), c111 = _mm512_setzero_ps();
  // The C tile is needed only after the k loop: start fetching its lines now (a row of 32 floats spans 2–3 lines).
  for (int i = 0; i < m; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#pragma GCC unroll 4
  for (int k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    { const __m512 ai = _mm512_set1_ps(a[0]); c00 = _mm512_fmadd_ps(ai, b0, c00); c01 = _mm512_fmadd_ps(ai, b1, c01); }
    { const __m512 ai = _mm512_set1_ps(a[1]); c10 = _mm512_fmadd_ps(ai, b0, c10); c11 = _mm512_fmadd_ps(ai, b1, c11); }
    { const __m512 ai = _mm512_set1_ps(a[2]); c20 = _mm512_fmadd_ps(ai, b0, c20); c21 = _mm512_fmadd_ps(ai, b1, c21); }
    { const __m512 ai = _mm512_set1_ps(a[3]); c30 = _mm512_fmadd_ps(ai, b0, c30); c31 = _mm512_fmadd_ps(ai, b1, c31); }
    { const __m512 ai = _mm512_set1_ps(a[4]); c40 = _mm512_fmadd_ps(ai, b0, c40); c41 = _mm512_fmadd_ps(ai, b1, c41); }
    { const __m512 ai = _mm512_set1_ps(a[5]); c50 = _mm512_fmadd_ps(ai, b0, c50); c51 = _mm512_fmadd_ps(ai, b1, c51); }
    { const __m512 ai = _mm512_set1_ps(a[6]); c60 = _mm512_fmadd_ps(ai, b0, c60); c61 = _mm512_fmadd_ps(ai, b1, c61); }
    { const __m512 ai = _mm512_set1_ps(a[7]); c70 = _mm512_fmadd_ps(ai, b0, c70); c71 = _mm512_fmadd_ps(ai, b1, c71); }
    { const __m512 ai = _mm512_set1_ps(a[8]); c80 = _mm512_fmadd_ps(ai, b0, c80); c81 = _mm512_fmadd_ps(ai, b1, c81); }
    { const __m512 ai = _mm512_set1_ps(a[9]); c90 = _mm512_fmadd_ps(ai, b0, c90); c91 = _mm512_fmadd_ps(ai, b1, c91); }
    { const __m512 ai = _mm512_set1_ps(a[10]); c100 = _mm512_fmadd_ps(ai, b0, c100); c101 = _mm512_fmadd_ps(ai, b1, c101); }
    { const __m512 ai = _mm512_set1_ps(a[11]); c110 = _mm512_fmadd_ps(ai, b0, c110); c111 = _mm512_fmadd_ps(ai, b1, c111); }
  }
  if (m == MR && n == NR) {
    if (accumulate) {
      _mm512_storeu_ps(c + 0 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 0 * ldc), c00)); _mm512_storeu_ps(c + 0 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 0 * ldc + 16), c01));
      _mm512_storeu_ps(c + 1 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 1 * ldc), c10)); _mm512_storeu_ps(c + 1 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 1 * ldc + 16), c11));
      _mm512_storeu_ps(c + 2 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 2 * ldc), c20)); _mm512_storeu_ps(c + 2 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 2 * ldc + 16), c21));
      _mm512_storeu_ps(c + 3 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 3 * ldc), c30)); _mm512_storeu_ps(c + 3 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 3 * ldc + 16), c31));
      _mm512_storeu_ps(c + 4 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 4 * ldc), c40)); _mm512_storeu_ps(c + 4 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 4 * ldc + 16), c41));
      _mm512_storeu_ps(c + 5 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 5 * ldc), c50)); _mm512_storeu_ps(c + 5 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 5 * ldc + 16), c51));
      _mm512_storeu_ps(c + 6 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 6 * ldc), c60)); _mm512_storeu_ps(c + 6 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 6 * ldc + 16), c61));
      _mm512_storeu_ps(c + 7 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 7 * ldc), c70)); _mm512_storeu_ps(c + 7 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 7 * ldc + 16), c71));
      _mm512_storeu_ps(c + 8 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 8 * ldc), c80)); _mm512_storeu_ps(c + 8 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 8 * ldc + 16), c81));
      _mm512_storeu_ps(c + 9 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 9 * ldc), c90)); _mm512_storeu_ps(c + 9 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 9 * ldc + 16), c91));
      _mm512_storeu_ps(c + 10 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 10 * ldc), c100)); _mm512_storeu_ps(c + 10 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 10 * ldc + 16), c101));
      _mm512_storeu_ps(c + 11 * ldc, _mm512_add_ps(_mm512_loadu_ps(c + 11 * ldc), c110)); _mm512_storeu_ps(c + 11 * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + 11 * ldc + 16), c111));
    } else {
      _mm512_storeu_ps(c + 0 * ldc, c00); _mm512_storeu_ps(c + 0 * ldc + 16, c01);
      _mm512_storeu_ps(c + 1 * ldc, c10); _mm512_storeu_ps(c + 1 * ldc + 16, c11);
      _mm512_storeu_ps(c + 2 * ldc, c20); _mm512_storeu_ps(c + 2 * ldc + 16, c21);
      _mm512_storeu_ps(c + 3 * ldc, c30); _mm512_storeu_ps(c + 3 * ldc + 16, c31);
      _mm512_storeu_ps(c + 4 * ldc, c40); _mm512_storeu_ps(c + 4 * ldc + 16, c41);
      _mm512_storeu_ps(c + 5 * ldc, c50); _mm512_storeu_ps(c + 5 * ldc + 16, c51);
      _mm512_storeu_ps(c + 6 * ldc, c60); _mm512_storeu_ps(c + 6 * ldc + 16, c61);
      _mm512_storeu_ps(c + 7 * ldc, c70); _mm512_storeu_ps(c + 7 * ldc + 16, c71);
      _mm512_storeu_ps(c + 8 * ldc, c80); _mm512_storeu_ps(c + 8 * ldc + 16, c81);
      _mm512_storeu_ps(c + 9 * ldc, c90); _mm512_storeu_ps(c + 9 * ldc + 16, c91);
      _mm512_storeu_ps(c + 10 * ldc, c100); _mm512_storeu_ps(c + 10 * ldc + 16, c101);
      _mm512_storeu_ps(c + 11 * ldc, c110); _mm512_storeu_ps(c + 11 * ldc + 16, c111);
    }
    return;
  }
  alignas(64) float tile[MR * NR];
  _mm512_store_ps(tile + 0 * NR, c00); _mm512_store_ps(tile + 0 * NR + 16, c01);
  _mm512_store_ps(tile + 1 * NR, c10); _mm512_store_ps(tile + 1 * NR + 16, c11);
  _mm512_store_ps(tile + 2 * NR, c20); _mm512_store_ps(tile + 2 * NR + 16, c21);
  _mm512_store_ps(tile + 3 * NR, c30); _mm512_store_ps(tile + 3 * NR + 16, c31);
  _mm512_store_ps(tile + 4 * NR, c40); _mm512_store_ps(tile + 4 * NR + 16, c41);
  _mm512_store_ps(tile + 5 * NR, c50); _mm512_store_ps(tile + 5 * NR + 16, c51);
  _mm512_store_ps(tile + 6 * NR, c60); _mm512_store_ps(tile + 6 * NR + 16, c61);
  _mm512_store_ps(tile + 7 * NR, c70); _mm512_store_ps(tile + 7 * NR + 16, c71);
  _mm512_store_ps(tile + 8 * NR, c80); _mm512_store_ps(tile + 8 * NR + 16, c81);
  _mm512_store_ps(tile + 9 * NR, c90); _mm512_store_ps(tile + 9 * NR + 16, c91);
  _mm512_store_ps(tile + 10 * NR, c100); _mm512_store_ps(tile + 10 * NR + 16, c101);
  _mm512_store_ps(tile + 11 * NR, c110); _mm512_store_ps(tile + 11 * NR + 16, c111);
  store_partial_tile(tile, NR, c, ldc, m, n, accumulate);
}
// clang-format on

// Small-M products (drivers in gemm_tile.inc). nn tile: R ≤ 6 rows × 32 columns (up to 12 accumulators).
struct SmallNNTile {
  static constexpr int W = 32;
  template <int R>
  static void run(int kn, const float* A, int lda, const float* B, int ldb, float* P, int ldp, bool first) {
    __m512 c0[R], c1[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      c0[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(P + (long)r * ldp);
      c1[r] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(P + (long)r * ldp + 16);
    }
    for (int k = 0; k < kn; ++k) {
      const float* b = B + (long)k * ldb;
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(A[(long)r * lda + k]);
        c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
        c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
      }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(P + (long)r * ldp, c0[r]);
      _mm512_storeu_ps(P + (long)r * ldp + 16, c1[r]);
    }
  }
};

// nt tile: R ≤ 6 rows × NC ≤ 2 columns; per element: 16 lanes accumulated by FMA over k, summed lane 0 to 15, then
// the k tail one product at a time.
struct SmallNTTile {
  template <int R, int NC>
  static void run(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
    const int K16 = K / 16 * 16;
    __m512 acc[R][NC];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
      for (int q = 0; q < NC; ++q) acc[r][q] = _mm512_setzero_ps();
    for (int k = 0; k < K16; k += 16) {
      __m512 bv[NC];
#pragma GCC unroll 2
      for (int q = 0; q < NC; ++q) bv[q] = _mm512_loadu_ps(B + (long)q * ldb + k);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const __m512 av = _mm512_loadu_ps(A + (long)r * lda + k);
#pragma GCC unroll 2
        for (int q = 0; q < NC; ++q) acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < NC; ++q) {
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, acc[r][q]);
        float s = 0;
        for (int l = 0; l < 16; ++l) s += lanes[l];
        const float* a = A + (long)r * lda;
        const float* b = B + (long)q * ldb;
        for (int k = K16; k < K; ++k) s += a[k] * b[k];
        float* cp = C + (long)r * ldc + q;
        *cp = accumulate ? *cp + s : s;
      }
  }
};

const GemmMicroKernel kernel = {"avx512", MR, NR, micro_avx512, pack_a_transposing<MR>, pack_b_transposing<NR>,
                                small_nn_blocked<SmallNNTile>, small_nt_pairs<SmallNTTile>};
}  // namespace

const GemmMicroKernel* gemm_kernel_avx512() { return &kernel; }
}  // namespace gradmm
