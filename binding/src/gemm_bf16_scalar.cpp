// The portable bf16 kernel: the arithmetic of gemm_bf16.h written out (vdpbf16ps's order, fused multiply-adds,
// bf16 denormals read as zero, denormal results flushed to zero). The reference the AVX512_BF16 kernel is checked
// against bit for bit; runs anywhere (slowly).
#include <cfloat>
#include <cmath>

#include "gemm_bf16.h"

namespace gradmm {
namespace {
#include "gemm_bf16_tile.inc"

constexpr int MR = 4, NR = 32;  // NR: the packed weights' panel width (gemm_bf16.h)

inline float daz(uint16_t h) {  // bf16 → f32 with a denormal read as a signed zero
  return (h & 0x7f80u) ? bf16_to_f32(h) : bf16_to_f32(h & 0x8000u);
}
inline float ftz(float x) { return std::fabs(x) < FLT_MIN ? std::copysign(0.f, x) : x; }

void micro_scalar(int kp, const uint32_t* a, const uint32_t* b, float* c, long ldc, int m, int n, bool accumulate) {
  float acc[MR * NR] = {0};
  for (int q = 0; q < kp; ++q, a += MR, b += NR)
    for (int i = 0; i < MR; ++i) {
      const float alo = daz((uint16_t)a[i]), ahi = daz((uint16_t)(a[i] >> 16));
      for (int j = 0; j < NR; ++j) {
        const float blo = daz((uint16_t)b[j]), bhi = daz((uint16_t)(b[j] >> 16));
        float s = ftz(std::fma(ahi, bhi, acc[i * NR + j]));
        acc[i * NR + j] = ftz(std::fma(alo, blo, s));
      }
    }
  store_partial_tile_bf16(acc, NR, c, ldc, m, n, accumulate);
}

const GemmBf16Kernel kernel = {"bf16-scalar", MR, NR, micro_scalar, pack_a_bf16<MR>, pack_b_bf16<NR>};
}  // namespace

const GemmBf16Kernel* gemm_bf16_kernel_scalar() { return &kernel; }
}  // namespace gradmm
