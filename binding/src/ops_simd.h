// Eight-lane (AVX2) versions of ops.h's elementwise float loops, in their own translation unit built for AVX2
// (binding/src/ops_avx2.cpp). Each processes the longest multiple-of-8 prefix of its range and returns its length;
// the caller finishes the rest with the portable code, which gives the same bits per element.
#pragma once

namespace gradmm {

// True when the CPU has AVX2 and this build compiled the AVX2 loops (checked once).
bool simd_avx2();

long exp_shifted_avx2(float* p, const float* x, float shift, long n);               // p = exp_fast(x − shift)
long gelu_forward_avx2(float* out, const float* inp, long n);                         // out = gelu(inp)
long gelu_backward_avx2(float* dinp, const float* inp, const float* dout, long n);    // dinp += gelu'(inp)·dout
long swiglu_forward_avx2(float* out, const float* gate, const float* up, long n);     // out = silu(gate)·up
// dgate += dout·up·silu'(gate), dup += dout·silu(gate) (either may be null)
long swiglu_backward_avx2(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long n);

}  // namespace gradmm
