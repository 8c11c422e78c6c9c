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

// In-register 8×8 transpose: on return r[q] holds what was column q.
inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Packing where the panel runs across the storage order (A not transposed, B transposed): 8×8 register transposes
// instead of strided scalar stores. Partial panels and k tails take the generic code.
void pack_a_avx2(bool transA, const float* A, int lda, int i0, int mc, int p0, int kc, float* dst) {
  if (transA) return pack_a_panels<MR>(transA, A, lda, i0, mc, p0, kc, dst);
  const int k8 = kc / 8 * 8;
  for (int ip = 0; ip < mc; ip += MR, dst += (long)MR * kc) {
    if (mc - ip < MR) return pack_a_panels<MR>(transA, A, lda, i0 + ip, mc - ip, p0, kc, dst);
    const float* src = A + (long)(i0 + ip) * lda + p0;
    for (int k = 0; k < k8; k += 8) {
      __m256 r[8];
      for (int i = 0; i < MR; ++i) r[i] = _mm256_loadu_ps(src + (long)i * lda + k);
      r[6] = r[7] = _mm256_setzero_ps();
      transpose8x8(r);
      // r[q] = the 6 values of column k+q, then 2 zeros: each full store spills 2 floats into the next column's
      // slot, which the next store overwrites; the last one stores exactly 6.
      float* d = dst + (long)k * MR;
      for (int q = 0; q < 7; ++q) _mm256_storeu_ps(d + q * MR, r[q]);
      _mm_storeu_ps(d + 7 * MR, _mm256_castps256_ps128(r[7]));
      _mm_storel_pi(reinterpret_cast<__m64*>(d + 7 * MR + 4), _mm256_extractf128_ps(r[7], 1));
    }
    for (int k = k8; k < kc; ++k)
      for (int i = 0; i < MR; ++i) dst[(long)k * MR + i] = src[(long)i * lda + k];
  }
}

void pack_b_avx2(bool transB, const float* B, int ldb, int p0, int kc, int j0, int nc, float* dst) {
  if (!transB) return pack_b_panels<NR>(transB, B, ldb, p0, kc, j0, nc, dst);
  const int k8 = kc / 8 * 8;
  for (int jp = 0; jp < nc; jp += NR, dst += (long)NR * kc) {
    if (nc - jp < NR) return pack_b_panels<NR>(transB, B, ldb, p0, kc, j0 + jp, nc - jp, dst);
    const float* src = B + (long)(j0 + jp) * ldb + p0;
    for (int k = 0; k < k8; k += 8)
      for (int h = 0; h < NR; h += 8) {
        __m256 r[8];
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (long)(h + j) * ldb + k);
        transpose8x8(r);
        for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (long)(k + q) * NR + h, r[q]);
      }
    for (int k = k8; k < kc; ++k)
      for (int j = 0; j < NR; ++j) dst[(long)k * NR + j] = src[(long)j * ldb + k];
  }
}

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

const GemmMicroKernel kernel = {"avx2", MR, NR, micro_avx2, pack_a_avx2, pack_b_avx2, small_nn_blocked<SmallNNTile>,
                                small_nt_pairs<SmallNTTile>};
}  // namespace

const GemmMicroKernel* gemm_kernel_avx2() { return &kernel; }
}  // namespace gradmm
