// Residual add (ops.h: residual_*). Grid-stride loops; out may alias a.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__global__ void residual_forward_kernel(float* out, const float* a, const float* b, long N) {
  GRADMM_GRID_LOOP(i, N) out[i] = a[i] + b[i];
}
__global__ void residual_backward_kernel(float* da, float* db, const float* dout, long N) {
  GRADMM_GRID_LOOP(i, N) {
    const float d = dout[i];
    if (da) da[i] += d;
    if (db) db[i] += d;
  }
}
void residual_forward(float* out, const float* a, const float* b, long N) {
  if (N <= 0) return;
  residual_forward_kernel<<<grid_for(N, 256), 256>>>(out, a, b, N);
  check_launch("residual_forward");
}
void residual_backward(float* da, float* db, const float* dout, long N) {
  if (N <= 0 || (!da && !db)) return;
  residual_backward_kernel<<<grid_for(N, 256), 256>>>(da, db, dout, N);
  check_launch("residual_backward");
}

}  // namespace cuda
}  // namespace gradmm
