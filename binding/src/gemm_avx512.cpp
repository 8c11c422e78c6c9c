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

// Small-M products. nn: 3 rows × 64 columns per register tile (12 named accumulators, so they stay in
// registers), B streamed once per row triple.
void small_nn(int M, int j0, int j1, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
  constexpr int NW = 4 * 16;
  int j = j0;
  for (; j + NW <= j1; j += NW) {
    int i = 0;
    for (; i + 3 <= M; i += 3) {
      __m512 c00 = _mm512_setzero_ps(); __m512 c01 = _mm512_setzero_ps(); __m512 c02 = _mm512_setzero_ps(); __m512 c03 = _mm512_setzero_ps(); __m512 c10 = _mm512_setzero_ps(); __m512 c11 = _mm512_setzero_ps(); __m512 c12 = _mm512_setzero_ps(); __m512 c13 = _mm512_setzero_ps(); __m512 c20 = _mm512_setzero_ps(); __m512 c21 = _mm512_setzero_ps(); __m512 c22 = _mm512_setzero_ps(); __m512 c23 = _mm512_setzero_ps();
      const float *a0 = A + (long)i * lda, *a1 = a0 + lda, *a2 = a1 + lda;
      for (int k = 0; k < K; ++k) {
        const float* b = B + (long)k * ldb + j;
        const __m512 b0 = _mm512_loadu_ps(b + 0), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
        { const __m512 a = _mm512_set1_ps(a0[k]); c00 = _mm512_fmadd_ps(a, b0, c00); c01 = _mm512_fmadd_ps(a, b1, c01); c02 = _mm512_fmadd_ps(a, b2, c02); c03 = _mm512_fmadd_ps(a, b3, c03); }
        { const __m512 a = _mm512_set1_ps(a1[k]); c10 = _mm512_fmadd_ps(a, b0, c10); c11 = _mm512_fmadd_ps(a, b1, c11); c12 = _mm512_fmadd_ps(a, b2, c12); c13 = _mm512_fmadd_ps(a, b3, c13); }
        { const __m512 a = _mm512_set1_ps(a2[k]); c20 = _mm512_fmadd_ps(a, b0, c20); c21 = _mm512_fmadd_ps(a, b1, c21); c22 = _mm512_fmadd_ps(a, b2, c22); c23 = _mm512_fmadd_ps(a, b3, c23); }
      }
      __m512* tiles[3][4] = {{&c00, &c01, &c02, &c03}, {&c10, &c11, &c12, &c13}, {&c20, &c21, &c22, &c23}};
      for (int r = 0; r < 3; ++r)
        for (int q = 0; q < 4; ++q) {
          float* cp = C + (long)(i + r) * ldc + j + q * 16;
          _mm512_storeu_ps(cp, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp), *tiles[r][q]) : *tiles[r][q]);
        }
    }
    for (; i < M; ++i) {
      __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps(), c3 = _mm512_setzero_ps();
      for (int k = 0; k < K; ++k) {
        const float* b = B + (long)k * ldb + j;
        const __m512 a = _mm512_set1_ps(A[(long)i * lda + k]);
        c0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(b + 0), c0); c1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(b + 16), c1); c2 = _mm512_fmadd_ps(a, _mm512_loadu_ps(b + 32), c2); c3 = _mm512_fmadd_ps(a, _mm512_loadu_ps(b + 48), c3);
      }
      float* cp = C + (long)i * ldc + j;
      _mm512_storeu_ps(cp + 0, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp + 0), c0) : c0);
      _mm512_storeu_ps(cp + 16, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp + 16), c1) : c1);
      _mm512_storeu_ps(cp + 32, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp + 32), c2) : c2);
      _mm512_storeu_ps(cp + 48, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp + 48), c3) : c3);
    }
  }
  if (j < j1) small_nn_ref(M, j, j1, K, A, lda, B, ldb, C, ldc, accumulate);
}

// nt: each B row (a column of C) is read once and dotted with up to 4 rows of A.
void small_nt(int M, int j0, int j1, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool accumulate) {
  const int K8 = K / 16 * 16;
  for (int j = j0; j < j1; ++j) {
    const float* b = B + (long)j * ldb;
    for (int i = 0; i < M; i += 4) {
      const int rows = M - i < 4 ? M - i : 4;
      __m512 c[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int k = 0; k < K8; k += 16) {
        __m512 bv = _mm512_loadu_ps(b + k);
        for (int r = 0; r < rows; ++r) c[r] = _mm512_fmadd_ps(_mm512_loadu_ps(A + (long)(i + r) * lda + k), bv, c[r]);
      }
      for (int r = 0; r < rows; ++r) {
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, c[r]);
        float s = 0;
        for (int q = 0; q < 16; ++q) s += lanes[q];
        for (int k = K8; k < K; ++k) s += A[(long)(i + r) * lda + k] * b[k];
        float* cp = C + (long)(i + r) * ldc + j;
        *cp = accumulate ? *cp + s : s;
      }
    }
  }
}

const GemmMicroKernel kernel = {"avx512", MR, NR, micro_avx512, pack_a_panels<MR>, pack_b_panels<NR>, small_nn, small_nt};
}  // namespace

const GemmMicroKernel* gemm_kernel_avx512() { return &kernel; }
}  // namespace gradmm
