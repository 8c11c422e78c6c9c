#include <type_traits>
#include <vector>

#include "gemm.h"

namespace gradmm {
namespace {
#include "gemm_tile.inc"

constexpr int MR = 4, NR = 8;

void micro_scalar(int kc, const float* a, const float* b, float* c, long ldc, int m, int n, bool accumulate) {
  float acc[MR * NR] = {0};
  for (int k = 0; k < kc; ++k, a += MR, b += NR)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += a[i] * b[j];
  store_partial_tile(acc, NR, c, ldc, m, n, accumulate);
}

const GemmMicroKernel kernel = {"scalar", MR, NR, micro_scalar, pack_a_panels<MR>, pack_b_panels<NR>, small_nn_ref, small_nt_ref};
}  // namespace

const GemmMicroKernel* gemm_kernel_scalar() { return &kernel; }
}  // namespace gradmm
