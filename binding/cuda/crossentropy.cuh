// Softmax + cross-entropy per row of logits [N,V] with an optional row mask (ops.h: softmax_crossentropy_*).
// Forward: one block per row (block max, block sum, probabilities written once then scaled). Backward: a 2-D grid
// over (columns, rows). Masked rows (mask 0): loss 0, probabilities untouched, no gradient, as on the CPU.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__global__ void softmax_crossentropy_forward_kernel(float* losses, float* probs, const float* logits,
                                                    const int* targets, const float* mask, int V) {
  const long r = blockIdx.x;
  if (mask && mask[r] == 0.f) {  // block-uniform
    if (threadIdx.x == 0) losses[r] = 0.f;
    return;
  }
  const float* x = logits + r * V;
  float* p = probs + r * V;
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
  m = block_max(m);
  float s = 0.f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float e = expf(x[v] - m);
    p[v] = e;
    s += e;
  }
  s = block_sum(s);
  const float inv = 1.f / s;
  for (int v = threadIdx.x; v < V; v += blockDim.x) p[v] *= inv;
  if (threadIdx.x == 0) losses[r] = -(x[targets[r]] - m - logf(s));
}

__global__ void softmax_crossentropy_backward_kernel(float* dlogits, const float* dlosses, const float* probs,
                                                     const int* targets, const float* mask, int N, int V) {
  for (long r = blockIdx.y; r < N; r += gridDim.y) {
    if (mask && mask[r] == 0.f) continue;
    const float dl = dlosses[r];
    const int t = targets[r];
    const float* p = probs + r * V;
    float* d = dlogits + r * V;
    for (int v = blockIdx.x * blockDim.x + threadIdx.x; v < V; v += blockDim.x * gridDim.x)
      d[v] += (p[v] - (v == t ? 1.f : 0.f)) * dl;
  }
}

void softmax_crossentropy_forward(float* losses, float* probs, const float* logits, const int* targets,
                                  const float* mask, int N, int V) {
  if (N <= 0) return;
  softmax_crossentropy_forward_kernel<<<N, 512>>>(losses, probs, logits, targets, mask, V);
  check_launch("softmax_crossentropy_forward");
}
void softmax_crossentropy_backward(float* dlogits, const float* dlosses, const float* probs, const int* targets,
                                   const float* mask, int N, int V) {
  if (N <= 0 || V <= 0) return;
  const dim3 grid((unsigned)std::min(64, (V + 255) / 256), (unsigned)std::min(N, 65535));
  softmax_crossentropy_backward_kernel<<<grid, 256>>>(dlogits, dlosses, probs, targets, mask, N, V);
  check_launch("softmax_crossentropy_backward");
}

}  // namespace cuda
}  // namespace gradmm
