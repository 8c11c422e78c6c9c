// Embedding ops (ops.h: embedding_*, input_embedding_*). Forward: one thread per output element; a null wpe gives
// the token lookup alone (the Llama family has no learned positions). Backward: the
// position gradient sums the batch in order per (t, c) (deterministic, same order as the CPU); the token gradient
// uses atomicAdd because token ids repeat.
#pragma once
#include "common.cuh"

namespace gradmm {
namespace cuda {

__global__ void embedding_forward_kernel(float* out, const int* tokens, const float* wte, const float* wpe, long BT,
                                         int T, int C, int pos0, float scale) {
  GRADMM_GRID_LOOP(i, BT * C) {
    const long bt = i / C;
    const int c = (int)(i % C);
    const float te = wte[(long)tokens[bt] * C + c] * scale;  // Gemma's sqrt(hidden_size); 1 elsewhere
    out[i] = wpe ? te + wpe[(long)(pos0 + bt % T) * C + c] : te;  // no wpe: the token lookup alone (Llama)
  }
}
__global__ void input_embedding_forward_kernel(float* out, const float* inp, const float* wpe, long BT, int T, int C,
                                               int pos0) {
  GRADMM_GRID_LOOP(i, BT * C) {
    const long bt = i / C;
    const int c = (int)(i % C);
    out[i] = inp[i] + wpe[(long)(pos0 + bt % T) * C + c];
  }
}
__global__ void embedding_token_backward_kernel(float* dwte, const float* dout, const int* tokens, long BT, int C,
                                                float scale) {
  GRADMM_GRID_LOOP(i, BT * C) {
    const long bt = i / C;
    const int c = (int)(i % C);
    atomicAdd(dwte + (long)tokens[bt] * C + c, dout[i] * scale);
  }
}
// dwpe[pos0+t, c] += Σ_b dout[b,t,c], b in order
__global__ void embedding_position_backward_kernel(float* dwpe, const float* dout, int B, int T, int C, int pos0) {
  GRADMM_GRID_LOOP(i, (long)T * C) {
    const int t = (int)(i / C), c = (int)(i % C);
    float* g = dwpe + (long)(pos0 + t) * C + c;
    float acc = *g;
    for (int b = 0; b < B; ++b) acc += dout[((long)b * T + t) * C + c];
    *g = acc;
  }
}
__global__ void add_inplace_kernel(float* dst, const float* src, long n) {
  GRADMM_GRID_LOOP(i, n) dst[i] += src[i];
}

void embedding_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C, int pos0,
                       float scale) {
  const long n = (long)B * T * C;
  if (n == 0) return;
  embedding_forward_kernel<<<grid_for(n, 256), 256>>>(out, tokens, wte, wpe, (long)B * T, T, C, pos0, scale);
  check_launch("embedding_forward");
}
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int* tokens, int B, int T, int C, int pos0,
                        float scale) {
  const long n = (long)B * T * C;
  if (n == 0) return;
  if (dwte) {
    embedding_token_backward_kernel<<<grid_for(n, 256), 256>>>(dwte, dout, tokens, (long)B * T, C, scale);
    check_launch("embedding_backward (tokens)");
  }
  if (dwpe) {
    embedding_position_backward_kernel<<<grid_for((long)T * C, 256), 256>>>(dwpe, dout, B, T, C, pos0);
    check_launch("embedding_backward (positions)");
  }
}
void input_embedding_forward(float* out, const float* inp, const float* wpe, int B, int T, int C, int pos0) {
  const long n = (long)B * T * C;
  if (n == 0) return;
  input_embedding_forward_kernel<<<grid_for(n, 256), 256>>>(out, inp, wpe, (long)B * T, T, C, pos0);
  check_launch("input_embedding_forward");
}
void input_embedding_backward(float* dinp, float* dwpe, const float* dout, int B, int T, int C, int pos0) {
  const long n = (long)B * T * C;
  if (n == 0) return;
  if (dinp) {
    add_inplace_kernel<<<grid_for(n, 256), 256>>>(dinp, dout, n);
    check_launch("input_embedding_backward (inputs)");
  }
  if (dwpe) {
    embedding_position_backward_kernel<<<grid_for((long)T * C, 256), 256>>>(dwpe, dout, B, T, C, pos0);
    check_launch("input_embedding_backward (positions)");
  }
}

}  // namespace cuda
}  // namespace gradmm
