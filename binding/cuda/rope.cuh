// Rotary position embeddings (llama_ops.h: rope_*), rotate_half convention: for i < hd/2 the pair (x_i, x_{i+hd/2})
// of each head is rotated by the angle of the row's position, from cos/sin tables [positions, hd/2] uploaded once
// by the executor. One thread per pair; it reads both entries before writing either, so out may alias inp.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__global__ void rope_kernel(float* out, const float* inp, int N, int T, int ld, int n_heads, int hd,
                            const float* cos, const float* sin, int pos0, bool inverse, bool accumulate) {
  const int half = hd / 2;
  GRADMM_GRID_LOOP(e, (long)N * n_heads * half) {
    const int i = (int)(e % half);
    const long rh = e / half;
    const int h = (int)(rh % n_heads);
    const long r = rh / n_heads;
    const long pos = pos0 + r % T;
    const float c = cos[pos * half + i], s = inverse ? -sin[pos * half + i] : sin[pos * half + i];
    const long o = r * ld + (long)h * hd + i;
    const float a = inp[o], b = inp[o + half];
    const float ya = a * c - b * s, yb = b * c + a * s;  // x·cos + rotate_half(x)·sin
    if (accumulate) {
      out[o] += ya;
      out[o + half] += yb;
    } else {
      out[o] = ya;
      out[o + half] = yb;
    }
  }
}

static void rope_launch(float* out, const float* inp, int N, int T, int ld, int n_heads, int hd, const float* cos,
                        const float* sin, int pos0, bool inverse, bool accumulate, const char* what) {
  const long n = (long)N * n_heads * (hd / 2);
  if (n <= 0) return;
  rope_kernel<<<grid_for(n, 256), 256>>>(out, inp, N, T, ld, n_heads, hd, cos, sin, pos0, inverse, accumulate);
  check_launch(what);
}
void rope_forward(float* out, const float* inp, int N, int T, int ld, int n_heads, int hd, const float* cos,
                  const float* sin, int pos0) {
  rope_launch(out, inp, N, T, ld, n_heads, hd, cos, sin, pos0, false, false, "rope_forward");
}
void rope_backward(float* dinp, const float* dout, int N, int T, int ld, int n_heads, int hd, const float* cos,
                   const float* sin, int pos0, bool accumulate) {
  rope_launch(dinp, dout, N, T, ld, n_heads, hd, cos, sin, pos0, true, accumulate, "rope_backward");
}

}  // namespace cuda
}  // namespace gradmm
