// The bf16 kernel on AMX (TDPBF16PS on 16×16 f32 tiles): compiled with -mamx-tile -mamx-bf16 (+AVX-512 BF16 for the
// k tail); only called after CPUID reports AMX-BF16 and AMX-TILE and Linux grants the tile data state
// (arch_prctl(ARCH_REQ_XCOMP_PERM)): gemm_bf16.cpp. A 32×32 block of C is 4 accumulator tiles, fed by 2 tiles of A
// (16 rows × 16 bf16 pairs, packed row-major here) and 2 of B (16 pairs × 16 columns: the shared panel layout,
// gemm_bf16_tile.inc, read with a 128-byte row stride). The products are those of the other kernels; the order in
// which a tile instruction adds them is the hardware's (TDPBF16PS: the even element first), so its results are
// within rounding of the portable kernel's rather than bit-identical (binding/tests/gemm_bf16_tests.cpp). Where the
// compiler cannot target AMX, GRADMM_NO_AMX leaves it out.
#include "gemm_bf16.h"

#if defined(GRADMM_NO_AMX) || !(defined(__x86_64__))
namespace gradmm {
const GemmBf16Kernel* gemm_bf16_kernel_amx() { return nullptr; }
bool amx_bf16_usable() { return false; }
}  // namespace gradmm
#else

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace gradmm {
namespace {
#include "gemm_bf16_tile.inc"

constexpr int MR = 32, NR = 32;

// op(A)[i0:i0+mc, p0:p0+kc] into 32-row panels, each row ⌈kc/2⌉ pairs (row-major: a tile row is 16 pairs of a row)
void pack_a_rows(bool transA, const float* A, int lda, int i0, int mc, int p0, int kc, uint32_t* dst) {
  const int kp = (kc + 1) / 2;
  for (int ip = 0; ip < mc; ip += MR, dst += (long)MR * kp) {
    const int rows = mc - ip < MR ? mc - ip : MR;
    for (int i = 0; i < MR; ++i) {
      uint32_t* d = dst + (long)i * kp;
      if (i >= rows) {
        for (int q = 0; q < kp; ++q) d[q] = 0;
        continue;
      }
      auto at = [&](int k) { return transA ? A[(long)(p0 + k) * lda + i0 + ip + i] : A[(long)(i0 + ip + i) * lda + p0 + k]; };
      for (int q = 0; q < kp; ++q)
        d[q] = bf16_pair(f32_to_bf16(at(2 * q)), 2 * q + 1 < kc ? f32_to_bf16(at(2 * q + 1)) : (uint16_t)0);
    }
  }
}

struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void configure_tiles() {
  thread_local bool done = false;
  if (done) return;
  alignas(64) TileConfig cfg{};
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  done = true;
}

void micro_amx(int kp, const uint32_t* a, const uint32_t* b, float* c, long ldc, int m, int n, bool accumulate) {
  configure_tiles();
  const int q16 = kp / 16 * 16;
  const long sa = (long)kp * 4;  // bytes between rows of the A panel
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int q0 = 0; q0 < q16; q0 += 16) {
    _tile_loadd(4, a + q0, sa);
    _tile_loadd(5, a + 16L * kp + q0, sa);
    _tile_loadd(6, b + (long)q0 * NR, NR * 4);
    _tile_loadd(7, b + (long)q0 * NR + 16, NR * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float t[MR * NR];
  _tile_stored(0, t, NR * 4);
  _tile_stored(1, t + 16, NR * 4);
  _tile_stored(2, t + 16 * NR, NR * 4);
  _tile_stored(3, t + 16 * NR + 16, NR * 4);
  if (q16 < kp) {  // the last < 16 pairs: vdpbf16ps on the tile's sums
    for (int i = 0; i < MR; ++i) {
      __m512 lo = _mm512_load_ps(t + i * NR), hi = _mm512_load_ps(t + i * NR + 16);
      for (int q = q16; q < kp; ++q) {
        __m512i ai = _mm512_set1_epi32((int)a[(long)i * kp + q]);
        __m512i b0 = _mm512_load_si512(reinterpret_cast<const void*>(b + (long)q * NR));
        __m512i b1 = _mm512_load_si512(reinterpret_cast<const void*>(b + (long)q * NR + 16));
        __m512bh abh, b0h, b1h;
        std::memcpy(&abh, &ai, 64);
        std::memcpy(&b0h, &b0, 64);
        std::memcpy(&b1h, &b1, 64);
        lo = _mm512_dpbf16_ps(lo, abh, b0h);
        hi = _mm512_dpbf16_ps(hi, abh, b1h);
      }
      _mm512_store_ps(t + i * NR, lo);
      _mm512_store_ps(t + i * NR + 16, hi);
    }
  }
  if (m == MR && n == NR) {
    for (int i = 0; i < MR; ++i) {
      float* ci = c + (long)i * ldc;
      const __m512 lo = _mm512_load_ps(t + i * NR), hi = _mm512_load_ps(t + i * NR + 16);
      if (accumulate) {
        _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), lo));
        _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), hi));
      } else {
        _mm512_storeu_ps(ci, lo);
        _mm512_storeu_ps(ci + 16, hi);
      }
    }
    return;
  }
  store_partial_tile_bf16(t, NR, c, ldc, m, n, accumulate);
}

const GemmBf16Kernel kernel = {"amx-bf16", MR, NR, micro_amx, pack_a_rows, pack_b_bf16<NR>};

bool detect() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  if (!amx_bf16 || !amx_tile) return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return false;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;  // the k tail runs vdpbf16ps
  if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !((a1 >> 5) & 1u)) return false;
  // Linux: ask for the tile data state (ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18)
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}
}  // namespace

bool amx_bf16_usable() {
  static const bool ok = detect();
  return ok;
}
const GemmBf16Kernel* gemm_bf16_kernel_amx() { return &kernel; }
}  // namespace gradmm
#endif
