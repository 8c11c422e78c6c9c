// Compiled with -mavx2 only (no FMA: every product is rounded before its sum, as in the scalar and SSE code), and
// called only after CPUID reports AVX2. Eight lanes of the same operations in the same order as ops.h's exp_fast,
// gelu_scalar and gelu_backward, so each element is bit-identical to the portable code on any CPU.
#include <immintrin.h>

#include "ops_simd.h"

namespace gradmm {
namespace {

inline __m256 exp_fast8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 fn = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic), magic);
  const __m256i n = _mm256_cvttps_epi32(fn);
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(fn, _mm256_set1_ps(0.693359375f))),
                                 _mm256_mul_ps(fn, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}
inline __m256 tanh8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(exp_fast8(_mm256_mul_ps(_mm256_set1_ps(2.0f), x)), one)));
}
inline __m256 gelu_inner8(__m256 x) {  // s·(x + 0.044715·x·x·x)
  const __m256 cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), x), x);
  return _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_add_ps(x, cube));
}

inline __m256 sigmoid8(__m256 g) {  // 1 / (1 + exp_fast(−g)), the negation exact (sign flip)
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp_fast8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)))));
}

}  // namespace

long swiglu_forward_avx2(float* out, const float* gate, const float* up, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, sigmoid8(g)), _mm256_loadu_ps(up + i)));
  }
  return i;
}

long swiglu_backward_avx2(float* dgate, float* dup, const float* dout, const float* gate, const float* up, long n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i), s = sigmoid8(g), d = _mm256_loadu_ps(dout + i);
    if (dgate) {
      const __m256 ds = _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(g, _mm256_sub_ps(one, s))));
      _mm256_storeu_ps(dgate + i, _mm256_add_ps(_mm256_loadu_ps(dgate + i), _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(up + i)), ds)));
    }
    if (dup) _mm256_storeu_ps(dup + i, _mm256_add_ps(_mm256_loadu_ps(dup + i), _mm256_mul_ps(d, _mm256_mul_ps(g, s))));
  }
  return i;
}

long exp_shifted_avx2(float* p, const float* x, float shift, long n) {
  const __m256 sh = _mm256_set1_ps(shift);
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, exp_fast8(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh)));
  return i;
}

long gelu_forward_avx2(float* out, const float* inp, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(inp + i);
    const __m256 th = tanh8(gelu_inner8(x));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), th)));
  }
  return i;
}

long gelu_backward_avx2(float* dinp, const float* inp, const float* dout, long n) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), s = _mm256_set1_ps(0.7978845608028654f);
  const __m256 c3 = _mm256_set1_ps(3.0f * 0.044715f);
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(inp + i);
    const __m256 th = tanh8(gelu_inner8(x));
    const __m256 sech2 = _mm256_sub_ps(one, _mm256_mul_ps(th, th));
    const __m256 left = _mm256_mul_ps(half, _mm256_add_ps(one, th));
    const __m256 right = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), sech2), s),
                                       _mm256_add_ps(one, _mm256_mul_ps(_mm256_mul_ps(c3, x), x)));
    const __m256 grad = _mm256_add_ps(left, right);
    _mm256_storeu_ps(dinp + i, _mm256_add_ps(_mm256_loadu_ps(dinp + i), _mm256_mul_ps(grad, _mm256_loadu_ps(dout + i))));
  }
  return i;
}

}  // namespace gradmm
